"""Benchmark (c): distributed generation (Ray actors) vs single-process search, per core.

Both search the same generated arith problems with the scripted teacher (8 rollouts, 4
candidates). The single-process run (``rstar search``'s code path) is pinned to 1 core, the
distributed one (``rstar generate``'s) to 2 cores; throughput per core is compared (goal >= 0.5).
Ray's start-up is timed separately and excluded (a cluster is started once, not per round).
Usage: python benchmarks/distributed_vs_single.py [--problems 200]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SINGLE = """
import json, time
from rstar.config import SearchRunConfig
from rstar.domains.arith import generate
from rstar.domains.teacher import ScriptedTeacher
from rstar.search import make_sandbox, search_trees
import dataclasses
cfg = SearchRunConfig(problems={n})
cfg = dataclasses.replace(cfg, sandbox=dataclasses.replace(cfg.sandbox, workers=1))
problems = generate(cfg.problems, cfg.seed)
with make_sandbox(cfg.sandbox) as sb:
    sb.run("pass")
    t0 = time.perf_counter()
    trees = search_trees(problems, cfg, cfg.mcts, ScriptedTeacher(), sb)
    dt = time.perf_counter() - t0
print(json.dumps({{"s": dt, "solved": sum(t.solved() for t in trees)}}))
"""

DIST = """
import json, tempfile, time
import ray
from rstar.config import GenerateConfig
from rstar.generate import init_ray, run_generate
cfg = GenerateConfig(problems={n})
t0 = time.perf_counter()
init_ray(cfg)
t_init = time.perf_counter() - t0
with tempfile.TemporaryDirectory() as d:
    t0 = time.perf_counter()
    s = run_generate(cfg, d, show_progress=False)
    dt = time.perf_counter() - t0
print(json.dumps({{"s": dt, "init_s": t_init, "solved": round(s["solved_frac"] * {n})}}))
"""


def run(code: str, cores: str) -> dict:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    out = subprocess.run(["taskset", "-c", cores, sys.executable, "-c", code], cwd=REPO,
                         env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--problems", type=int, default=200)
    n = ap.parse_args().problems
    single = run(SINGLE.format(n=n), "0")
    dist = run(DIST.format(n=n), "0,1")
    per_core_single = n / single["s"]
    per_core_dist = n / dist["s"] / 2
    print(f"single process, 1 core : {single['s']:6.2f} s  {per_core_single:6.1f} problems/s/core"
          f"  (solved {single['solved']}/{n})")
    print(f"distributed,   2 cores : {dist['s']:6.2f} s  {per_core_dist:6.1f} problems/s/core"
          f"  (solved {dist['solved']}/{n}; Ray start-up {dist['init_s']:.1f} s not counted)")
    print(f"per-core ratio distributed/single: {per_core_dist / per_core_single:.2f}  "
          f"(goal >= 0.5)")


if __name__ == "__main__":
    main()
