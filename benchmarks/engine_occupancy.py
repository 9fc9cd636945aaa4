"""Benchmark (a): how busy ``rstar generate`` keeps the hf engine.

Tokens/s the policy engine reaches inside a generation run (tokens generated ÷ time from its
first to its last call) divided by the tokens/s of the same engine on one saturated batch
called directly (goal >= 0.8). Use a trained policy (``--model WORKDIR/policy``): an untrained
model rarely ends a step, so its trees die after one expansion and the run is too short to
measure; without ``--model`` a random tiny model is built and the figure says little.
Usage: python benchmarks/engine_occupancy.py --model DIR [--problems 64]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def saturated_tokens_per_s(model: str, batch: int, n: int, max_tokens: int) -> float:
    from actors.engines.base import GenRequest
    from actors.engines.hf import HFTextEngine
    from rstar.domains.arith import generate
    from tree.steps import StepFormat

    fmt = StepFormat()
    eng = HFTextEngine(model, temperature=1.0, max_new_tokens=max_tokens)
    reqs = [GenRequest(fmt.render(p.question, []), n=n, seed=i)
            for i, p in enumerate(generate(batch, 7))]
    eng.generate(reqs[:2], fmt.stops)  # warm-up
    t0 = time.perf_counter()
    out = eng.generate(reqs, fmt.stops)
    return sum(c.tokens for cands in out for c in cands) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="policy checkpoint (default: a random tiny model)")
    ap.add_argument("--problems", type=int, default=64)
    ap.add_argument("--rollouts", type=int, default=4)
    ap.add_argument("--candidates", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=64)
    args = ap.parse_args()

    from rstar.config import EngineConfig, GenerateConfig, WorkerConfig
    from rstar.generate import init_ray, run_generate
    from tree.mcts import MCTSConfig

    tmp = tempfile.mkdtemp()
    model = args.model
    if model is None:
        from trainers.tiny_model import make_tiny_model

        model = str(make_tiny_model(f"{tmp}/model"))
    cfg = GenerateConfig(
        problems=args.problems, mcts=MCTSConfig(rollouts=args.rollouts,
                                                candidates=args.candidates),
        policy=EngineConfig(kind="hf", model=model, max_tokens=args.max_tokens),
        workers=WorkerConfig(workers=2, trees_per_worker=args.problems))
    init_ray(cfg)
    s = run_generate(cfg, tmp, show_progress=False)
    (p,) = s["policy"]
    inside = p["tokens"] / max(1e-9, p["active_s"])
    direct = saturated_tokens_per_s(model, min(64, args.problems), args.candidates,
                                    args.max_tokens)
    print(f"inside rstar generate: {p['tokens']} tokens in {p['active_s']:.1f} s = "
          f"{inside:.0f} tok/s (engine busy {p['busy_s'] / max(1e-9, p['active_s']):.0%}, "
          f"{p['requests'] / max(1, p['calls']):.1f} requests per call)")
    print(f"one saturated batch:   {direct:.0f} tok/s")
    print(f"occupancy ratio: {inside / direct:.2f}  (goal >= 0.8)")


if __name__ == "__main__":
    main()
