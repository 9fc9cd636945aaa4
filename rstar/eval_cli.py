"""``rstar eval``: test-time search on a benchmark, with baselines on the same problems.

Runs greedy pass@1, maj@N, best-of-N scored by the PPM as an outcome model, and PPM-guided MCTS
(SPEC §3) and writes ``results.json`` plus a Markdown table into the output directory.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from rstar.config import EngineConfig, SandboxConfig


def load_problems(data: str | None, benchmark: str | None, limit: int | None,
                  domain: str = "math"):
    from rstar.domains import load_domain

    if bool(data) == bool(benchmark):
        raise ValueError("give exactly one of --data FILE or --benchmark NAME")
    probs = load_domain(domain).load(data or benchmark)
    return probs[:limit] if limit else probs


def check_checkpoints(policy_path: str | None, ppm_path: str | None) -> None:
    """A missing checkpoint is an error naming it, before anything is loaded."""
    for path, what in ((policy_path, "policy"), (ppm_path, "ppm")):
        if path and "://" not in path and not Path(path, "config.json").exists():
            raise FileNotFoundError(f"{what} checkpoint not found: {path} (no config.json)")


def run_eval(problems, policy_path: str, ppm_path: str | None, out_dir: str | Path, *, n: int = 8,
             select: str = "ppm_best", candidates: int = 4, rollouts: int = 32,
             engine: str = "hf", max_tokens: int = 256, max_depth: int = 16,
             domain: str = "math",
             name: str = "", isolation: str = "auto", chat: bool = False,
             show_progress: bool = False) -> dict:
    from actors.engines.factory import make_policy, make_scorer
    from rstar.evaluate import evaluate
    from tree.steps import StepFormat

    check_checkpoints(policy_path, ppm_path)
    from actors.engines.base import close
    from actors.engines.factory import check_engine

    fmt = StepFormat(chat=chat)
    pcfg = EngineConfig(kind=engine, model=policy_path, max_tokens=max_tokens)
    qcfg = EngineConfig(kind=engine, model=ppm_path) if ppm_path else None
    check_engine(pcfg, "--policy")
    if qcfg is not None:
        check_engine(qcfg, "--ppm")
    policy = make_policy(pcfg, fmt)
    scorer = make_scorer(qcfg, fmt) if qcfg is not None else None
    from rstar.domains import with_preload

    # e.g. math: model code leans on sympy, imported once per sandbox worker, not per step
    sandbox = with_preload(SandboxConfig(isolation=isolation), domain)
    t0 = time.perf_counter()
    try:
        res = evaluate(problems, fmt, sandbox, policy, scorer, n=n, candidates=candidates,
                       rollouts=rollouts, select=select, domain=domain,  # type: ignore[arg-type]
                       max_depth=max_depth,
                       show_progress=show_progress)
    finally:
        close(policy)
        close(scorer)
    res.update(benchmark=name, policy=policy_path, ppm=ppm_path, wall_s=round(
        time.perf_counter() - t0, 1))
    from rstar.measure import eval_rows, summarize

    rows = eval_rows(problems, res.pop("verdicts"))
    res.update(summarize(rows, ("greedy", "maj", "best_of_n", "search")))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # Each problem's verdicts: to pair two evaluations by problem, or to find its failures.
    (out / "per_problem.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (out / "results.json").write_text(json.dumps(res, indent=2))
    (out / "results.md").write_text(markdown(res))
    return res


def markdown(res: dict) -> str:
    n = res["n"]
    rows = [("greedy pass@1", res["greedy_acc"], res.get("greedy_ci")),
            (f"maj@{n}", res.get("maj_acc"), res.get("maj_ci"))]
    if "search_acc" in res:
        rows += [(f"best-of-{n} (PPM as outcome model)", res["best_of_n_acc"],
                  res.get("best_of_n_ci")),
                 (f"MCTS + PPM, {n} trajectories, PPM's best", res["search_acc_ppm_best"],
                  None),
                 (f"MCTS + PPM, {n} trajectories, vote of PPM's top 4",
                  res["search_acc_ppm_vote"], None),
                 (f"MCTS + PPM, {n} trajectories, PPM-weighted vote",
                  res["search_acc_ppm_weighted"], None),
                 (f"MCTS + PPM, {n} trajectories, vote weighted by the policy's path share",
                  res["search_acc_path_vote"], None),
                 (f"MCTS + PPM, {n} trajectories, vote weighted by path share x PPM",
                  res["search_acc_path_ppm"], None)]
    lines = [f"**{res.get('benchmark') or 'data'}** — {res['problems']} problems, policy "
             f"`{res['policy']}`, PPM `{res.get('ppm')}`", "", "| method | accuracy |",
             "|---|---|"]
    lines += [f"| {name} | {acc:.1%}" + (f" [{ci[0]:.1%}, {ci[1]:.1%}]" if ci else "") + " |"
              for name, acc, ci in rows if acc is not None]
    lines += ["", "Brackets: 95% intervals (Wilson)."]
    if res.get("ppm_sample_pairs"):
        lines += ["", f"PPM orders a correct sample above a wrong one of the same problem in "
                      f"{res['ppm_sample_order_acc']:.1%} of {res['ppm_sample_pairs']} pairs."]
    return "\n".join(lines) + "\n"
