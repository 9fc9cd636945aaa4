"""Benchmark (#4): the policy SFT as a Ray Train job vs the same loop run plainly.

Both fine-tune the same base model on the same SFT examples of a round (``WORKDIR/shards``,
e.g. from ``rstar generate --problems 300``) with the same settings; the ratio of wall times is
Ray's overhead — Ray Data extraction, the Train controller and worker group, checkpoint
hand-off (goal <= 1.3 on a ~2-minute job). Usage:
  python benchmarks/train_overhead.py --workdir DIR [--epochs 8]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


class ListShard:
    """What the loop reads from a Ray Data shard, over a plain list."""

    def __init__(self, rows: list[dict]) -> None:
        self.rows = rows

    def iter_rows(self):
        return iter(self.rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", required=True, help="round directory with shards/")
    ap.add_argument("--epochs", type=int, default=8)
    args = ap.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")

    import torch

    from rstar import shards
    from rstar.config import PolicyTrainConfig, TrainConfig
    from rstar.generate import init_ray
    from trainers.sft import ensure_tiny_base, load_model, sft_loop, train_policy
    from trainers.tiny_model import make_tiny_model
    from tree.extract import sft_examples

    base = ensure_tiny_base(args.workdir, PolicyTrainConfig().format, make_tiny_model)
    cfg = PolicyTrainConfig(base_model=base, eval_problems=0, min_steps=0,
                            train=TrainConfig(epochs=args.epochs))
    tc = dataclasses.asdict(cfg.train)

    # Ray is up for both runs (its start-up is not counted): the loop then shares the cores with
    # the same background processes, and a difference is the job's own cost.
    init_ray(min_cpus=cfg.train.cpus_per_worker)
    t0 = time.perf_counter()
    rows = [e for t in shards.read_trees(f"{args.workdir}/shards") for e in sft_examples(t)]
    torch.set_num_threads(cfg.train.cpus_per_worker)
    model, tok = load_model({"train": tc, "base_model": base})
    m_plain = sft_loop(model, tok, ListShard(rows), {"train": tc, "fmt": cfg.format,
                                                      "n_examples": len(rows)})
    with tempfile.TemporaryDirectory() as d:
        model.save_pretrained(d)
    plain = time.perf_counter() - t0

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        m_ray = train_policy(cfg, args.workdir, out_dir=f"{d}/policy")
    ray_s = time.perf_counter() - t0
    print(f"plain loop:     {plain:6.1f} s  ({m_plain['train_tokens_per_s']:.0f} tok/s, "
          f"{m_plain['steps']} steps, {len(rows)} examples)")
    print(f"Ray Train job:  {ray_s:6.1f} s  ({m_ray['train_tokens_per_s']:.0f} tok/s inside the "
          f"worker, {m_ray['steps']} steps)")
    print(f"overhead ratio Ray/plain: {ray_s / plain:.2f}  (goal <= 1.3)")


if __name__ == "__main__":
    main()
