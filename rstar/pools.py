"""Where each round's problems come from: the round's pool (generated, or the part of a
benchmark the previous round did not find easy), the frontier pre-filter, the fixed held-out set,
and the audit of how true a round's verified solutions are."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

from rstar import shards
from rstar.config import EvolveConfig, RoundSpec
from rstar.data import Problem
from tree.extract import classify


def round_dir(workdir: str | Path, r: int) -> Path:
    return Path(workdir) / f"round-{r}"


def difficulty_classes(shard_dir: str | Path) -> dict[str, str]:
    """SPEC §4's class of every searched problem (escalated trees ``<id>#x64`` count with their
    problem): easy (every trajectory correct), medium (mixed), hard (none correct)."""
    cols = ["problem_id", "terminal", "exec_ok", "correct"]
    verdicts: dict[str, list[bool]] = {}
    for row in shards.read_table(shard_dir, cols).to_pylist():
        v = verdicts.setdefault(row["problem_id"].split("#")[0], [])
        if row["terminal"] and row["exec_ok"] and row["correct"] is not None:
            v.append(bool(row["correct"]))
    return {pid: classify(v) for pid, v in verdicts.items()}


def round_pool(cfg: EvolveConfig, r: int, spec: RoundSpec,
               workdir: str | Path | None = None) -> list[Problem]:
    """Round r's problems. A generated domain: a fresh mix, harder as rounds go (the schedule's
    difficulties). Otherwise the first N problems of ``data`` that the previous round did not
    find easy — a problem every trajectory already solved teaches nothing new, so the pool moves
    toward the medium and hard ones as rounds go."""
    from rstar.domains import load_domain

    domain = load_domain(cfg.domain)
    if not cfg.data:
        return domain.problems(spec.problems, cfg.seed * 100 + r, spec.difficulties,
                               prefix=f"r{r}")
    pool = domain.load(cfg.data)
    prev = round_dir(workdir, r - 1) / "shards" if workdir is not None and r > 1 else None
    if prev is not None and prev.is_dir():
        easy = {pid for pid, c in difficulty_classes(prev).items() if c == "easy"}
        pool = [p for p in pool if p.id not in easy]
    return pool[: spec.problems]


def heldout_set(cfg: EvolveConfig, n: int | None = None) -> list[Problem]:
    """The fixed held-out problems (the first ``n``; None: ``eval.problems``): the first of
    ``eval.data``, or generated ones cycling through ``eval.difficulties``, so every prefix is
    stratified."""
    from rstar.domains import load_domain

    e = cfg.eval
    n = e.problems if n is None else min(n, e.problems)
    domain = load_domain(cfg.domain)
    if e.data or not domain.generated:
        if not e.data:
            raise ValueError(f"domain {cfg.domain!r} generates no problems: set eval.data")
        return domain.load(e.data)[:n]
    return domain.problems(n, e.seed, e.difficulties, prefix="heldout")


def audit_sft(shard_dir: Path, domain_name: str) -> dict:
    """For domains with an ``audit`` (arith: ``computes``): the share of the round's SFT picks
    whose code really computes the question, by difficulty; the rest reached the right answer
    by luck. The search verifies answers only, so this is the one look at how true its
    training data is. {} for other domains."""
    from rstar.domains import load_domain
    from tree.extract import sft_examples

    audit = getattr(load_domain(domain_name), "audit", None)
    if audit is None:
        return {}
    by_d: dict[str, list[int]] = {}
    for tree in shards.read_trees(shard_dir):
        for ex in sft_examples(tree):
            difficulty, ok = audit(tree.question, "\n".join(ex["steps"]))
            c = by_d.setdefault(str(difficulty), [0, 0])
            c[0] += ok
            c[1] += 1
    total = sum(c[1] for c in by_d.values())
    return {"sft_examples": total,
            "sft_computes_frac": sum(c[0] for c in by_d.values()) / max(1, total),
            "sft_computes_by_difficulty": {d: c[0] / c[1] for d, c in sorted(by_d.items())}}


def frontier_pool(cfg: EvolveConfig, workdir: Path, r: int, spec: RoundSpec,
                  show_progress: bool) -> tuple[list[Problem], dict]:
    """Round r's pool without what the previous policy already solves greedily
    (``RoundSpec.prefilter``): ``prefilter`` × ``problems`` drawn, one greedy attempt each; while
    fewer than ``problems`` are left unsolved and under ``prefilter_max`` × ``problems`` drawn,
    the draw is extended (same problems first: pools are prefix-stable), sized by the unsolved
    share seen so far. The first ``problems`` unsolved are kept. Also returns how many were
    drawn and solved, by difficulty, and in how many waves."""
    from actors.engines.base import close
    from actors.engines.factory import make_policy
    from rstar.evaluate import greedy_solve

    want = spec.problems
    limit = math.ceil(want * max(spec.prefilter, spec.prefilter_max))
    size = min(limit, math.ceil(want * spec.prefilter))
    engine = dataclasses.replace(cfg.engine, model=str(round_dir(workdir, r - 1) / "policy"),
                                 temperature=0.0)
    policy = make_policy(engine, cfg.generate.format)
    drawn: list[Problem] = []
    solved: list[bool] = []
    waves = 0
    try:
        while True:
            new = round_pool(cfg, r, dataclasses.replace(spec, problems=size), workdir)
            new = new[len(drawn):]
            if not new:   # a benchmark pool has no more problems
                break
            waves += 1
            solved += greedy_solve(policy, new, cfg.generate.format, cfg.generate.sandbox,
                                   cfg.domain, seed=cfg.seed * 100 + r,
                                   desc=f"prefilter (greedy, wave {waves})"
                                   if show_progress else None)
            drawn += new
            left = solved.count(False)
            if left >= want or len(drawn) >= limit:
                break
            share = max(left / len(drawn), 1 / max(1, limit))
            # 10% over the estimate, so a second wave rarely needs a third.
            size = min(limit, len(drawn) + math.ceil(1.1 * (want - left) / share))
    finally:
        close(policy)
    by_d: dict[str, list[int]] = {}
    for p, ok in zip(drawn, solved):
        c = by_d.setdefault(str(p.meta.get("difficulty", "all")), [0, 0])
        c[0] += ok
        c[1] += 1
    left = [p for p, ok in zip(drawn, solved) if not ok]
    return left[:want], {
        "prefilter_drawn": len(drawn), "prefilter_solved": sum(solved),
        "prefilter_waves": waves,
        "prefilter_solved_by_difficulty": {d: c[0] / c[1] for d, c in sorted(by_d.items())}}
