"""Evaluation the way the search runs (every step's code in the sandbox): greedy pass@1, maj@N,
best-of-N by the PPM as an outcome model, and test-time MCTS guided by the PPM (SPEC §3)."""

from __future__ import annotations

import dataclasses
import time
from collections import Counter

from rstar.config import SELECT_RULES, Select
from rstar.domains import verifier_for
from rstar.domains.arith import generate
from rstar.grading import normalize_answer
from tree.driver import run_batched
from tree.mcts import MCTSConfig, TreeSearch
from tree.node import Tree
from tree.protocols import ProgramVerifier, ScoreRequest


def _sandbox(sandbox_cfg):
    from sandbox import Sandbox

    return Sandbox(**dataclasses.asdict(sandbox_cfg))


def _run(problems, cfg: MCTSConfig, policy, fmt, sandbox, scorer=None, gold=True, domain="arith",
         tag: str = "", desc: str | None = None) -> list[Tree]:
    return _run_many([(p, cfg, tag) for p in problems], policy, fmt, sandbox, scorer, gold,
                     domain, desc)


def _run_many(jobs, policy, fmt, sandbox, scorer=None, gold=True, domain="arith",
              desc: str | None = None) -> list[Tree]:
    """One batched pass over (problem, config, id tag) jobs; their trees in job order. ``desc``:
    a progress bar of finished trees under that name (None: no bar)."""
    from tqdm import tqdm

    verifier = verifier_for(domain)
    searches = [TreeSearch(p.id + tag, p.question, p.answer if gold else None, verifier, cfg, fmt)
                for p, cfg, tag in jobs]
    done = {}
    with tqdm(total=len(searches), desc=desc, unit="tree", disable=desc is None) as bar:
        for s in run_batched(searches, policy, sandbox, scorer):
            done[s.tree.problem_id] = s.tree
            bar.update()
    return [done[p.id + tag] for p, _, tag in jobs]


def greedy_solve(policy, problems, fmt, sandbox_cfg, domain: str = "arith",
                 max_depth: int = 16, seed: int = 0, desc: str | None = None) -> list[bool]:
    """One trajectory per problem (greedy if the policy decodes greedily; a sampling policy
    makes it one sampled attempt), every step executed; whether each ends correct."""
    cfg = MCTSConfig(rollouts=1, candidates=1, max_depth=max_depth, seed=seed)
    with _sandbox(sandbox_cfg) as sb:
        return [t.solved() for t in _run(problems, cfg, policy, fmt, sb, domain=domain,
                                         desc=desc)]


def sample_trajectories(policy, problems, n: int, fmt, sandbox, domain="arith",
                        max_depth: int = 16, seed: int = 0, desc: str | None = None) -> list[list]:
    """``n`` independent sampled trajectories per problem: their terminal nodes (None if none)."""
    # All n samples of all problems in one pass, so the engine sees n times fuller batches.
    cfgs = [MCTSConfig(rollouts=1, candidates=1, max_depth=max_depth, seed=seed * 1000 + k)
            for k in range(n)]
    trees = _run_many([(p, cfgs[k], f"#s{k}") for p in problems for k in range(n)], policy, fmt,
                      sandbox, domain=domain, desc=desc)
    ends = [t.terminals() for t in trees]
    return [[e[0] if e else None for e in ends[i * n:(i + 1) * n]] for i in range(len(problems))]


def majority(answers: list[str | None]) -> str | None:
    """The most common answer (normalised); ties go to the earliest."""
    keys = [normalize_answer(a) if a is not None else None for a in answers]
    counts = Counter(k for k in keys if k)
    if not counts:
        return None
    best = max(counts.values())
    return next(a for a, k in zip(answers, keys) if k and counts[k] == best)


def majority_pick(ends: list):
    """The first trajectory with the majority answer (None if none answered): for the code
    domain the answer is the function's output on the example, so this votes by behaviour."""
    win = majority([e.answer if e is not None else None for e in ends])
    if win is None:
        return None
    key = normalize_answer(win)
    return next(e for e in ends if e is not None and e.answer is not None
                and normalize_answer(e.answer) == key)


def ppm_pick(ends: list, scores: list[float], select: Select):
    """The trajectory ``ppm_select`` answers with: the best-scored one carrying its answer."""
    win = ppm_select(ends, scores, select)
    if win is None:
        return None
    key = normalize_answer(win)
    cands = [(s, -i) for i, (e, s) in enumerate(zip(ends, scores))
             if e is not None and e.answer is not None and normalize_answer(e.answer) == key]
    return ends[-max(cands)[1]]


def grade_picks(problems, picks: list, verifier, fmt, sandbox) -> list[bool]:
    """Whether each picked trajectory (None: no answer) is right: its verdict if it was graded
    during its search, else by the verifier — the answer's check, or for a ``ProgramVerifier``
    its program run against the hidden tests in ``sandbox``."""
    out: list[bool] = []
    jobs = []
    for i, (p, node) in enumerate(zip(problems, picks)):
        if node is None or node.answer is None:
            out.append(False)
        elif node.correct is not None:
            out.append(bool(node.correct))
        elif isinstance(verifier, ProgramVerifier):
            out.append(False)
            jobs.append((i, *verifier.test_program(fmt.program(node.steps()), p.answer)))
        else:
            out.append(bool(verifier.check(node.answer, p.answer)))
    if jobs:
        for (i, _, token), res in zip(jobs, sandbox.run_many([src for _, src, _ in jobs])):
            out[i] = verifier.passed(res, token)
    return out


def ppm_select(ends: list, scores: list[float], select: Select) -> str | None:
    """The answer of the best-scored trajectory (ppm_best, the paper's rule); the majority answer
    among the top-4 scored ones (ppm_vote, the reference code's); or a weighted vote, the answer
    whose trajectories' weights sum highest: (r + 1) / 2 for ppm_weighted (a score of -1 counts
    nothing), which leans on the PPM least where it misjudges single trajectories; the
    trajectory's ``path_share`` for path_vote (the policy's own probability of writing it,
    estimated from the candidate counts: search merges duplicates, and this is how their
    evidence still votes); their product for path_ppm."""
    ranked = sorted((s, i) for i, (e, s) in enumerate(zip(ends, scores))
                    if e is not None and e.answer is not None)
    ranked.reverse()
    if not ranked:
        return None
    if select == "ppm_best":
        return ends[ranked[0][1]].answer
    if select == "ppm_vote":
        return majority([ends[i].answer for _, i in ranked[:4]])
    weight: dict[str, float] = {}
    first: dict[str, str] = {}
    for s, i in sorted(ranked, key=lambda si: si[1]):  # in trajectory order: ties go to the first
        key = normalize_answer(ends[i].answer)
        w = (s + 1) / 2 if select != "path_vote" else 1.0
        if select in ("path_vote", "path_ppm"):
            w *= ends[i].path_share()
        weight[key] = weight.get(key, 0.0) + w
        first.setdefault(key, ends[i].answer)
    return first[max(weight, key=weight.get)]


def sample_ordering(verdicts: list[list[bool]],
                    scores: list[list[float]]) -> tuple[float | None, int]:
    """How often the PPM scores a problem's correct sample above its wrong one, over every
    (correct, wrong) pair of samples of the same problem (ties count half), and how many pairs
    (None and 0 when no problem has both).
    Unlike held-out tree pairs (a tree's best against its worst), these are the choices a
    test-time selection actually faces, on the policy's own mistakes."""
    wins, n = 0.0, 0
    for ok, sc in zip(verdicts, scores):
        for i, good in enumerate(ok):
            for j, bad in enumerate(ok):
                if good and not bad:
                    n += 1
                    wins += 1.0 if sc[i] > sc[j] else 0.5 if sc[i] == sc[j] else 0.0
    return (wins / n if n else None), n


def search_answers(policy, scorer, problems, fmt, sandbox, n: int, candidates: int,
                   rollouts: int, domain="arith", max_depth: int = 16, seed: int = 0,
                   desc: str | None = None) -> list:
    """Test-time search (SPEC §3): PPM-guided MCTS without ground truth until ``n`` trajectories
    end in an answer (or the rollout budget is spent). Per problem, the answered terminals and
    their PPM scores, for ``ppm_select`` (so several selection rules apply to one search)."""
    cfg = MCTSConfig(rollouts=rollouts, candidates=candidates, value_mode="ppm",
                     max_trajectories=n, max_depth=max_depth, seed=seed)
    trees = _run(problems, cfg, policy, fmt, sandbox, scorer, gold=False, domain=domain,
                 tag="#tts", desc=desc)
    out = []
    for t in trees:
        ends = [e for e in t.terminals() if e.answer is not None]
        out.append((ends, [e.prior if e.prior is not None else -1.0 for e in ends]))
    return out


def evaluate(problems, fmt, sandbox_cfg, policy, scorer=None, n: int = 8, candidates: int = 4,
             rollouts: int = 32, select: Select = "ppm_best", domain: str = "arith",
             seed: int = 0, max_depth: int = 16, show_progress: bool = False,
             sample_problems: int | None = None) -> dict:
    """Greedy pass@1 on ``problems``; maj@n, best-of-n by the PPM, and PPM-guided search on the
    first ``sample_problems`` of them (None: all; greedy is cheap, n samples and a search per
    problem are not). ``out["verdicts"]`` holds each measure's per-problem verdicts, in problem
    order, for intervals and paired comparisons (``rstar.measure``). ``show_progress``: a bar
    per phase (greedy, samples, search)."""
    def bar(name: str) -> str | None:
        return f"eval {name}" if show_progress else None

    verifier = verifier_for(domain)
    greedy_set = list(problems)
    problems = greedy_set[:sample_problems] if sample_problems is not None else greedy_set
    per_problem: dict[str, list[bool]] = {}

    def acc(name, picks):
        per_problem[name] = grade_picks(problems, picks, verifier, fmt, sb)
        return sum(per_problem[name]) / max(1, len(problems))

    t0 = time.perf_counter()
    times: dict[str, float] = {}

    def lap(name: str) -> None:   # seconds per phase, so an evaluation's cost can be attributed
        nonlocal t0
        times[f"eval_{name}_s"] = round(time.perf_counter() - t0, 1)
        t0 = time.perf_counter()

    with _sandbox(sandbox_cfg) as sb:
        greedy = _run(greedy_set, MCTSConfig(rollouts=1, candidates=1, max_depth=max_depth),
                      _greedy(policy), fmt, sb, domain=domain, tag="#g", desc=bar("greedy"))
        per_problem["greedy"] = [t.solved() for t in greedy]
        lap("greedy")
        out = {"problems": len(problems), "greedy_problems": len(greedy_set), "n": n,
               "greedy_acc": sum(per_problem["greedy"]) / max(1, len(greedy_set)),
               "verdicts": per_problem}
        if problems:   # n samples and a search per problem
            samples = sample_trajectories(policy, problems, n, fmt, sb, domain, max_depth, seed,
                                          desc=bar(f"{n} samples"))
            lap("samples")
            out["maj_acc"] = acc("maj", [majority_pick(ends) for ends in samples])
            if scorer is not None:
                best, verdicts, answered = [], [], []
                for p, ends in zip(problems, samples):
                    reqs = [ScoreRequest(p.question, tuple(e.steps())) for e in ends
                            if e is not None]
                    vals = iter(scorer.score(reqs) if reqs else [])
                    scores = [next(vals) if e is not None else -1.0 for e in ends]
                    best.append(ppm_pick(ends, scores, "ppm_best"))
                    keep = [i for i, e in enumerate(ends)
                            if e is not None and e.answer is not None]
                    # The samples ran with the gold answer: their terminals are graded already.
                    verdicts.append([bool(ends[i].correct) for i in keep])
                    answered.append([scores[i] for i in keep])
                out["best_of_n_acc"] = acc("best_of_n", best)
                # The PPM on the policy's own samples: what best-of-N and the search rely on.
                out["ppm_sample_order_acc"], out["ppm_sample_pairs"] = sample_ordering(
                    verdicts, answered)
                lap("score")
                found = search_answers(policy, scorer, problems, fmt, sb, n, candidates,
                                       rollouts, domain, max_depth, seed, desc=bar("search"))
                lap("search")
                # Every selection rule on the same trees: with a weak PPM, voting is more
                # robust than its single best pick (reported side by side).
                for rule in SELECT_RULES:
                    out[f"search_acc_{rule}"] = acc(f"search_{rule}",
                                                    [ppm_pick(e, sc, rule) for e, sc in found])
                out["search_acc"] = out[f"search_acc_{select}"]
                per_problem["search"] = per_problem[f"search_{select}"]
                out["select"] = select
        st = sb.stats()
        out.update(times)
        out.update(sandbox_isolation=st["isolation"], sandbox_fallback=st["isolation_fallback"])
    return out


def _greedy(policy):
    """The same policy decoding greedily (engines with a temperature setting)."""
    engine = getattr(policy, "engine", None)
    if engine is not None and hasattr(engine, "temperature"):
        import copy

        g = copy.copy(policy)
        g.engine = copy.copy(engine)
        g.engine.temperature = 0.0
        return g
    return policy


def hf_policy(model_dir: str, fmt, temperature: float = 0.0, max_tokens: int = 256):
    from actors.engines.base import LMPolicy
    from actors.engines.hf import HFTextEngine

    return LMPolicy(HFTextEngine(model_dir, temperature=temperature, max_new_tokens=max_tokens),
                    fmt)


def greedy_accuracy(model_dir: str, cfg) -> float:
    """Greedy accuracy of a policy checkpoint on fresh arith problems (``cfg`` has eval_*,
    format and sandbox fields, e.g. ``PolicyTrainConfig``)."""
    problems = generate(cfg.eval_problems, cfg.eval_seed, cfg.eval_difficulties, prefix="eval")
    ok = greedy_solve(hf_policy(model_dir, cfg.format), problems, cfg.format, cfg.sandbox)
    return sum(ok) / max(1, len(ok))
