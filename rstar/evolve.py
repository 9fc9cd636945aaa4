"""``rstar evolve``: the self-evolution rounds of SPEC §6, automated and resumable.

Round r, in ``DIR/round-<r>/``: search the round's problem pool (``shards/``; round 1 with the
bootstrap policy, later rounds with the previous round's policy, PPM-augmented from round 3,
still-unsolved problems escalated to more rollouts where the schedule says so), train the policy
(``policy/``) and the PPM (``ppm/``), evaluate on a fixed held-out set (``metrics.json``), then
rewrite ``DIR/summary.json`` and ``DIR/summary.png``. Every step leaves a file behind when it is
complete, so a rerun resumes at the first unfinished step.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

from rstar.config import ConfigError, EngineConfig, EvolveConfig, RoundSpec
from rstar.data import Problem
from rstar.tracking import Tracker
from rstar.pools import (audit_sft, difficulty_classes, frontier_pool, heldout_set,  # noqa: F401
                         round_dir, round_pool)


def _engine(base: EngineConfig, model: str) -> EngineConfig:
    return dataclasses.replace(base, model=model)


def generate_round(cfg: EvolveConfig, workdir: Path, r: int, spec: RoundSpec,
                   show_progress: bool) -> dict:
    from rstar.generate import run_generate

    rd = round_dir(workdir, r)
    prev = round_dir(workdir, r - 1)
    policy = cfg.bootstrap if r == 1 else _engine(cfg.engine, str(prev / "policy"))
    ppm = (_engine(cfg.ppm_engine, str(prev / "ppm")) if spec.value_mode == "ppm"
           else EngineConfig(kind="none"))
    mcts = dataclasses.replace(cfg.generate.mcts, rollouts=spec.rollouts,
                               value_mode=spec.value_mode, seed=cfg.seed * 100 + r)
    policy = dataclasses.replace(policy, temperature=spec.temperature)
    gcfg = dataclasses.replace(cfg.generate, round=r, mcts=mcts, policy=policy, ppm=ppm,
                               domain=cfg.domain)
    pool, pre = (frontier_pool(cfg, workdir, r, spec, show_progress)
                 if spec.prefilter > 0 and r > 1 else (round_pool(cfg, r, spec, workdir), {}))
    summary = run_generate(gcfg, rd, show_progress, problems=pool)
    scored = summary.get("ppm_scored", 0)
    # Round 4's escalation: problems no trajectory solved get more rollouts with new seeds. Their
    # trees are stored as separate problems ("<id>#x64"), so every tree stays intact.
    for k, extra in enumerate(spec.escalate):
        solved = {pid for pid, c in difficulty_classes(rd / "shards").items() if c != "hard"}
        todo = [dataclasses.replace(p, id=f"{p.id}#x{extra}") for p in pool
                if p.id not in solved]
        if not todo:
            break
        emcts = dataclasses.replace(mcts, rollouts=extra, seed=mcts.seed + 1000 * (k + 1))
        extra_run = run_generate(dataclasses.replace(gcfg, mcts=emcts), rd, show_progress,
                                 problems=todo)
        scored += extra_run.get("ppm_scored", 0)
    classes = list(difficulty_classes(rd / "shards").values())
    n = max(1, len(classes))
    audit = audit_sft(rd / "shards", cfg.domain)
    return {"train_problems": len(classes),
            "train_solved_frac": sum(c != "hard" for c in classes) / n,
            "difficulty": {c: classes.count(c) for c in ("easy", "medium", "hard")},
            "ppm_scored_steps": scored,
            "sandbox_isolation": summary.get("sandbox_isolation"),
            "sandbox_fallback": summary.get("sandbox_fallback"), **pre, **audit}


def evaluate_round(cfg: EvolveConfig, workdir: Path, r: int,
                   show_progress: bool = False) -> dict:
    """The round's policy and PPM on the held-out set (the full set in ``eval.full_rounds``, a
    smaller stratified check otherwise): accuracies with 95% intervals, per difficulty, and
    each problem's verdicts in ``eval.jsonl`` (the targets pair rounds by problem)."""
    from actors.engines.base import close
    from actors.engines.factory import make_policy, make_scorer
    from rstar.evaluate import evaluate
    from rstar.measure import eval_rows, summarize

    rd = round_dir(workdir, r)
    fmt = cfg.generate.format
    e = cfg.eval
    full = not e.full_rounds or r in e.full_rounds
    problems = heldout_set(cfg, None if full else e.check_problems)
    policy = make_policy(_engine(cfg.engine, str(rd / "policy")), fmt)
    # A round that trained no PPM and had none before (train_ppm) is measured without one.
    scorer = (make_scorer(_engine(cfg.ppm_engine, str(rd / "ppm")), fmt)
              if (rd / "ppm").exists() else None)
    try:
        out = evaluate(problems, fmt, cfg.generate.sandbox, policy, scorer, n=e.n,
                       candidates=e.candidates, rollouts=e.rollouts, select=e.select,
                       domain=cfg.domain, seed=e.seed, show_progress=show_progress,
                       sample_problems=e.sample_problems if full else e.check_sample_problems)
    finally:
        close(policy)
        close(scorer)
    verdicts = out.pop("verdicts")
    teacher = {}
    if r == 1 and e.teacher:
        t = time.perf_counter()
        verdicts["teacher"] = teacher_attempts(cfg, problems, show_progress)
        teacher = {"teacher_acc": sum(verdicts["teacher"]) / max(1, len(problems)),
                   "eval_teacher_s": round(time.perf_counter() - t, 1)}
    rows = eval_rows(problems, verdicts)
    _save_jsonl(rd / "eval.jsonl", rows)
    stats = summarize(rows, ("greedy", "maj", "best_of_n", "search", "teacher"))
    stats = {("policy_" + k if k.startswith("greedy_") else k): v for k, v in stats.items()}
    return {"policy_greedy_acc": out["greedy_acc"], "maj_acc": out.get("maj_acc"),
            "best_of_n_acc": out.get("best_of_n_acc"), "search_acc": out.get("search_acc"),
            "ppm_sample_order_acc": out.get("ppm_sample_order_acc"),
            "ppm_sample_pairs": out.get("ppm_sample_pairs", 0),
            **{k: v for k, v in out.items() if k.startswith("search_acc_")
               or (k.startswith("eval_") and k.endswith("_s"))},
            **teacher, **stats, "eval_full": full,
            "eval_n": e.n, "eval_select": e.select, "eval_problems": out["problems"],
            "greedy_problems": out["greedy_problems"]}


def teacher_attempts(cfg: EvolveConfig, problems: list[Problem], show_progress: bool) -> list:
    """Whether the bootstrap policy's single sampled attempt solves each problem."""
    from actors.engines.base import close
    from actors.engines.factory import make_policy
    from rstar.evaluate import greedy_solve

    policy = make_policy(cfg.bootstrap, cfg.generate.format,
                         teacher_error_rate=cfg.generate.generated.teacher_error_rate,
                         domain=cfg.domain)
    try:
        return greedy_solve(policy, problems, cfg.generate.format, cfg.generate.sandbox,
                            cfg.domain, seed=cfg.eval.seed,
                            desc="eval teacher" if show_progress else None)
    finally:
        close(policy)


def _round_cpus(cfg: EvolveConfig, spec: RoundSpec) -> float:
    """CPUs the actors of a round's search reserve, or its training jobs, whichever is more."""
    from rstar.generate import required_cpus

    g = dataclasses.replace(cfg.generate, policy=cfg.engine,
                            ppm=cfg.ppm_engine if spec.value_mode == "ppm"
                            else EngineConfig(kind="none"))
    train = max(t.num_workers * t.cpus_per_worker
                for t in (cfg.policy_train.train, cfg.ppm_train.train))
    return max(required_cpus(g), train)


def run_evolve(cfg: EvolveConfig, workdir: str | Path, show_progress: bool = True,
               rounds: int | None = None) -> list[dict]:
    """Run (or resume) the rounds; returns the summary (one dict per finished round)."""
    from actors.engines.factory import resolve
    from rstar.generate import init_ray
    from trainers.sft import ensure_tiny_base
    from trainers.tiny_model import make_tiny_model

    workdir = Path(workdir).resolve()  # Ray Train workers run elsewhere: no relative paths
    workdir.mkdir(parents=True, exist_ok=True)
    from rstar.domains import load_domain, with_preload

    load_domain(cfg.domain)   # an unknown domain fails here, naming the known ones
    cfg = dataclasses.replace(cfg, engine=resolve(cfg.engine), ppm_engine=resolve(cfg.ppm_engine),
                              generate=dataclasses.replace(cfg.generate, sandbox=with_preload(
                                  cfg.generate.sandbox, cfg.domain)))
    n_rounds = rounds or cfg.rounds
    if n_rounds > len(cfg.schedule):
        raise ValueError(f"{n_rounds} rounds asked, the schedule has {len(cfg.schedule)}")
    _check_schedule(cfg.schedule[:n_rounds])
    init_ray(min_cpus=max(_round_cpus(cfg, s) for s in cfg.schedule[:n_rounds]))
    base = cfg.base_model or ensure_tiny_base(str(workdir), cfg.generate.format,
                                              make_tiny_model, cfg.domain)
    tracker = Tracker(cfg.tracking, str(workdir), workdir.name, cfg)
    try:
        return _rounds(cfg, workdir, n_rounds, base, tracker, show_progress)
    finally:
        tracker.close()


def _rounds(cfg: EvolveConfig, workdir: Path, n_rounds: int, base: str, tracker: Tracker,
            show_progress: bool) -> list[dict]:
    from trainers.common import NoTrainingData
    from trainers.ppm import train_ppm

    for r in range(1, n_rounds + 1):
        spec, rd = cfg.schedule[r - 1], round_dir(workdir, r)
        metrics_file = rd / "metrics.json"
        if metrics_file.exists():
            continue
        print(f"\n=== round {r}: {spec.problems} problems, {spec.rollouts} rollouts, "
              f"{spec.value_mode} values ===", flush=True)
        progress = _load(rd / "progress.json")
        if "generate" not in progress:
            t = time.perf_counter()
            progress["generate"] = generate_round(cfg, workdir, r, spec, show_progress)
            progress["generate"]["generate_s"] = round(time.perf_counter() - t, 1)
            _save(rd / "progress.json", progress)
        prev = round_dir(workdir, r - 1)
        if not (rd / "policy" / "train_metrics.json").exists():
            t = time.perf_counter()
            init = base if cfg.policy_init == "base" or r == 1 else str(prev / "policy")
            pt = cfg.policy_train
            # Shortest-first suits a model learning the format from scratch; on a trained one
            # it costs (docs/results.md F1 vs F2).
            pt = dataclasses.replace(pt, train=dataclasses.replace(
                pt.train, epochs=spec.sft_epochs or pt.train.epochs,
                lr=spec.sft_lr or pt.train.lr, curriculum=pt.train.curriculum and init == base))
            try:
                replay = ([str(round_dir(workdir, k) / "shards") for k in range(1, r)]
                          if cfg.policy_init == "previous" else [])
                attempts = train_with_probe(
                    cfg, r, spec, rd, dataclasses.replace(pt, base_model=init, eval_problems=0),
                    replay, probe=init == base, show_progress=show_progress,
                    on_step=tracker.step_logger(f"round-{r}/policy"))
                if attempts:
                    progress["sft_attempts"] = attempts
            except NoTrainingData as e:  # nothing solved: the round keeps the policy it had
                _carry_over(init, rd / "policy", str(e))
            progress["sft_s"] = round(time.perf_counter() - t, 1)
            _save(rd / "progress.json", progress)
        if not spec.train_ppm and not (rd / "ppm").exists() and (prev / "ppm").exists():
            _carry_over(str(prev / "ppm"), rd / "ppm", f"round {r} trains no PPM")
        if spec.train_ppm and not (rd / "ppm" / "train_metrics.json").exists():
            t = time.perf_counter()
            try:
                replay = ([str(round_dir(workdir, k) / "shards") for k in range(1, r)]
                          if cfg.ppm_train.replay else [])
                train_ppm(cfg.ppm_train, str(rd), replay_dirs=replay,
                          show_progress=show_progress,
                          on_step=tracker.step_logger(f"round-{r}/ppm"))
            except NoTrainingData as e:
                if r == 1:
                    raise
                _carry_over(str(prev / "ppm"), rd / "ppm", str(e))
            progress["ppm_s"] = round(time.perf_counter() - t, 1)
            _save(rd / "progress.json", progress)
        ppm_metrics = _load(rd / "ppm" / "train_metrics.json")
        t = time.perf_counter()
        evaluation = evaluate_round(cfg, workdir, r, show_progress)
        timing = {k: progress.get(k) for k in ("sft_s", "ppm_s")}
        eval_s = round(time.perf_counter() - t, 1)
        m = {"round": r, **progress["generate"], **evaluation, **timing, "eval_s": eval_s,
             "sft_attempts": progress.get("sft_attempts"),
             "ppm_pair_acc": ppm_metrics.get("pair_acc"),
             "ppm_pair_acc_step": ppm_metrics.get("pair_acc_step"),
             "ppm_pair_acc_final": ppm_metrics.get("pair_acc_final"),
             "value_mode": spec.value_mode, "rollouts": spec.rollouts,
             "engine": cfg.engine.kind, "ppm_engine": cfg.ppm_engine.kind,
             # Summed over the round's steps, so a resumed round reports its full cost.
             "wall_s": round(progress["generate"].get("generate_s", 0) + (timing["sft_s"] or 0)
                             + (timing["ppm_s"] or 0) + eval_s, 1)}
        _save(metrics_file, m)
        rows = write_summary(workdir, n_rounds, cfg)
        tracker.log({**m, "targets": rows[-1].get("targets", {})}, r, "round")
    return write_summary(workdir, n_rounds, cfg)


def train_with_probe(cfg: EvolveConfig, r: int, spec: RoundSpec, rd: Path, pt, replay: list[str],
                     probe: bool, show_progress: bool, on_step) -> list[dict]:
    """The round's SFT into ``rd/policy``; with ``spec.sft_probe`` (and ``probe``: the round
    trains the base model) its greedy accuracy on a fresh draw like the round's pool is probed,
    and a policy below the bar is trained again on another data order (``train.seed`` + k, in
    ``rd/sft-try<k>``), the best probe's policy copied to ``rd/policy``. Returns the attempts'
    seeds and probes (none without a probe; ``sft_attempts: 1`` probes nothing)."""
    from rstar.domains import load_domain
    from trainers.sft import train_policy

    domain = load_domain(cfg.domain)
    tries = spec.sft_attempts if probe and spec.sft_probe > 0 and domain.generated else 1
    problems = (domain.problems(spec.sft_probe_problems, 7_000_000 + cfg.seed * 100 + r,
                                spec.difficulties, prefix=f"probe{r}") if tries > 1 else [])
    attempts: list[dict] = []
    for k in range(tries):
        seed = pt.train.seed + k
        # With a probe every attempt lands in its own directory and the kept one is copied to
        # rd/policy only at the end, so a run killed between attempts redoes them all on
        # resume; each is its own Ray Train run (its own storage), never a resumed one.
        out = rd / "policy" if tries == 1 else rd / f"sft-try{k + 1}" / "policy"
        train_policy(dataclasses.replace(pt, train=dataclasses.replace(pt.train, seed=seed)),
                     str(rd if tries == 1 else out.parent), shard_dir=str(rd / "shards"),
                     out_dir=str(out), replay_dirs=replay, show_progress=show_progress,
                     on_step=on_step)
        if tries == 1:
            break
        acc = probe_greedy(cfg, str(out), problems)
        attempts.append({"seed": seed, "probe": round(acc, 4), "dir": str(out)})
        print(f"round {r}: SFT attempt {k + 1} (train seed {seed}): greedy {acc:.1%} on "
              f"{len(problems)} probe problems (bar {spec.sft_probe:.0%})", flush=True)
        if acc >= spec.sft_probe:
            break
    best = max(attempts, key=lambda a: a["probe"], default=None)
    if best is not None:
        import shutil

        shutil.copytree(best["dir"], rd / "policy", dirs_exist_ok=True)
        print(f"round {r}: keeping attempt {attempts.index(best) + 1}'s policy", flush=True)
    return [{"seed": a["seed"], "probe": a["probe"], "kept": a is best} for a in attempts]


def probe_greedy(cfg: EvolveConfig, model_dir: str, problems: list[Problem]) -> float:
    """Greedy accuracy of a policy checkpoint on ``problems`` (the round's SFT probe)."""
    from actors.engines.base import close
    from actors.engines.factory import make_policy
    from rstar.evaluate import _greedy, greedy_solve

    policy = make_policy(_engine(cfg.engine, model_dir), cfg.generate.format)
    try:
        ok = greedy_solve(_greedy(policy), problems, cfg.generate.format, cfg.generate.sandbox,
                          domain=cfg.domain)
    finally:
        close(policy)
    return sum(ok) / max(1, len(ok))


def _check_schedule(schedule: tuple[RoundSpec, ...]) -> None:
    """A PPM-augmented round needs a PPM from an earlier round."""
    for r, spec in enumerate(schedule, 1):
        if spec.value_mode == "ppm" and not any(s.train_ppm for s in schedule[: r - 1]):
            raise ConfigError(f"schedule[{r - 1}].value_mode: round {r} searches with a PPM, "
                              "but no earlier round trains one (train_ppm)")


def _carry_over(src: str, dest: Path, why: str) -> None:
    """Copy a checkpoint forward unchanged, saying why in its ``train_metrics.json``."""
    import shutil

    print(f"rstar: {why}; keeping {src}", flush=True)
    shutil.copytree(src, dest, dirs_exist_ok=True)
    old = _load(dest / "train_metrics.json")
    _save(dest / "train_metrics.json", {**old, "carried_over_from": src, "reason": why})


def write_summary(workdir: Path, n_rounds: int, cfg: EvolveConfig) -> list[dict]:
    """``summary.json`` (one object per finished round; the last also holds ``targets``),
    ``summary.png`` and ``difficulty.png`` (greedy accuracy per difficulty by round)."""
    from rstar.measure import difficulty_plot, targets, targets_line

    done = [r for r in range(1, n_rounds + 1) if (round_dir(workdir, r) / "metrics.json").exists()]
    rows = [_load(round_dir(workdir, r) / "metrics.json") for r in done]
    if rows:
        first, last = (_load_jsonl(round_dir(workdir, r) / "eval.jsonl")
                       for r in (done[0], done[-1]))
        rows[-1]["targets"] = targets(rows, first, last, cfg)
    _save(workdir / "summary.json", rows)
    if rows:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        xs = [row["round"] for row in rows]
        for key, label in (("policy_greedy_acc", "policy greedy"), ("maj_acc", "maj@N"),
                           ("search_acc", "MCTS + PPM"), ("train_solved_frac", "train solved"),
                           ("ppm_pair_acc", "PPM pair acc"),
                           ("ppm_sample_order_acc", "PPM on own samples")):
            # A missing value (e.g. no correct-and-wrong sample pair) is a gap, not a zero.
            ax.plot(xs, [math.nan if row.get(key) is None else row[key] for row in rows],
                    marker="o", label=label)
        ax.set_xlabel("round")
        ax.set_ylabel("accuracy")
        ax.set_xticks(xs)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_title("rstar evolve")
        ax.text(0.01, 0.01, targets_line(rows[-1]["targets"]), transform=ax.transAxes,
                fontsize=6, va="bottom", wrap=True)
        fig.tight_layout()
        fig.savefig(workdir / "summary.png", dpi=100)
        plt.close(fig)
        difficulty_plot(rows, workdir / "difficulty.png")
    return rows


def _load(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def _load_jsonl(path: Path) -> list[dict]:
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln] if path.exists() else []


def _save_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tmp.replace(path)


def _save(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str))
    tmp.replace(path)
