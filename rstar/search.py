"""``rstar search``: MCTS on a domain's generated problems in one process, trees to one Parquet file.

The single-process path: the same ``TreeSearch`` coroutines the Ray workers drive, stepped
together by ``tree.driver.run_batched`` so the teacher and the sandbox see batches. It also runs a
baseline — one sampled attempt per problem by the same teacher — so the summary shows what search
adds.
"""

from __future__ import annotations

import dataclasses
import time
from collections import defaultdict
from pathlib import Path

from rstar.config import SearchRunConfig
from rstar.data import Problem
from rstar.domains import load_domain, verifier_for
from rstar.shards import write_trees
from sandbox import Sandbox
from tree.driver import run_batched
from tree.mcts import MCTSConfig, TreeSearch
from tree.node import Tree


def make_sandbox(cfg) -> Sandbox:
    """A ``Sandbox`` from a ``SandboxConfig``."""
    return Sandbox(**dataclasses.asdict(cfg))


def search_trees(problems: list[Problem], cfg: SearchRunConfig, mcts: MCTSConfig,
                 policy, sandbox: Sandbox, progress=None) -> list[Tree]:
    """Search every problem; trees come back in input order."""
    verifier = verifier_for(cfg.domain)
    searches = [TreeSearch(p.id, p.question, p.answer, verifier, mcts, cfg.format)
                for p in problems]
    order = {s.tree.problem_id: i for i, s in enumerate(searches)}
    done: list[Tree | None] = [None] * len(searches)
    for s in run_batched(searches, policy, sandbox, concurrency=cfg.concurrency):
        done[order[s.tree.problem_id]] = s.tree
        s.tree.meta["stats"] = dataclasses.asdict(s.stats)
        if progress is not None:
            progress(1)
    return [t for t in done if t is not None]


def summarize(problems: list[Problem], trees: list[Tree], baseline: list[Tree]) -> dict:
    """Solved fractions by difficulty (search vs one sampled attempt), node and sandbox counts."""
    by_d: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0])
    for p, t, b in zip(problems, trees, baseline):
        row = by_d[int(p.meta.get("difficulty", 0))]
        row[0] += 1
        row[1] += t.solved()
        row[2] += b.solved()
    nodes = sum(len(t.nodes) - 1 for t in trees)
    stats = [t.meta.get("stats", {}) for t in trees]
    return {
        "problems": len(trees),
        "search_solved": sum(t.solved() for t in trees) / max(1, len(trees)),
        "single_sample_solved": sum(b.solved() for b in baseline) / max(1, len(baseline)),
        "by_difficulty": {
            d: {"problems": n, "search_solved": s / n, "single_sample_solved": b / n}
            for d, (n, s, b) in sorted(by_d.items())
        },
        "nodes": nodes,
        "dead_nodes": sum(1 for t in trees for n in t.nodes if n.dead),
        "terminal_nodes": sum(len(t.terminals()) for t in trees),
        "executions": sum(s.get("executions", 0) for s in stats),
        "sandbox_exec_s": round(sum(s.get("exec_s", 0.0) for s in stats), 3),
    }


def run_search(cfg: SearchRunConfig, out: str | Path, show_progress: bool = True) -> dict:
    """Generate problems, search them, write the trees, return the summary."""
    from tqdm import tqdm

    t0 = time.perf_counter()
    domain = load_domain(cfg.domain)
    problems = domain.problems(cfg.problems, cfg.seed, cfg.generated.difficulties)
    teacher = domain.teacher(cfg.generated.teacher_error_rate, cfg.format)
    mcts = dataclasses.replace(cfg.mcts, seed=cfg.seed)
    # The baseline: one candidate per step, one rollout = one sampled attempt, executed.
    single = dataclasses.replace(mcts, rollouts=1, candidates=1)
    with make_sandbox(cfg.sandbox) as sandbox:
        with tqdm(total=2 * len(problems), desc="search", disable=not show_progress,
                  unit="tree") as bar:
            trees = search_trees(problems, cfg, mcts, teacher, sandbox, bar.update)
            baseline = search_trees(problems, cfg, single, teacher, sandbox, bar.update)
        sandbox_stats = sandbox.stats()
    n_rows = write_trees(out, trees)
    summary = summarize(problems, trees, baseline)
    summary.update(out=str(out), rows=n_rows, wall_s=round(time.perf_counter() - t0, 2),
                   sandbox_isolation=sandbox_stats.get("isolation"),
                   sandbox_fallback=sandbox_stats.get("isolation_fallback"))
    return summary
