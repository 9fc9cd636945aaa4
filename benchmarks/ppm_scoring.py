"""Benchmark: the hf PPM engine scoring a search's sibling candidates, shared prefix vs whole.

A search scores each expansion's candidates together; they share the question and the path.
``HFScoreEngine`` runs that common prefix once (``shared_prefix_logits``); this times it against
scoring every text whole (``ppm_logits``) on the same batches, in one run, and checks both give
the same scores. Texts: scripted-teacher solutions of 1-8-operation arith problems, cut after a
random step, each with ``--candidates`` sibling last steps.
Usage: python benchmarks/ppm_scoring.py --ppm DIR [--expansions 16] [--candidates 4] [--reps 5]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ppm", required=True, help="a PPM checkpoint (e.g. WORKDIR/round-2/ppm)")
    ap.add_argument("--expansions", type=int, default=16)
    ap.add_argument("--candidates", type=int, default=4)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()

    import torch

    from actors.engines.hf import HFScoreEngine, ppm_logits
    from trainers.tiny_model import training_texts
    from tree.steps import StepFormat

    fmt, rng = StepFormat(), random.Random(0)
    eng = HFScoreEngine(args.ppm, max_batch_seqs=args.expansions * args.candidates)
    texts = []
    for full in training_texts(args.expansions * args.candidates, seed=11):
        steps = full.split(fmt.step_end)
        k = rng.randrange(1, max(2, len(steps) - 1))
        prefix = fmt.step_end.join(steps[:k])
        texts.extend(prefix + fmt.step_end + f"x = {rng.randrange(100)}\n" + fmt.step_end
                     for _ in range(args.candidates))
        if len(texts) >= args.expansions * args.candidates:
            break
    tok = eng.tokenizer

    def whole():
        enc = tok(texts, add_special_tokens=False, padding=True, return_tensors="pt")
        with torch.inference_mode():
            return torch.tanh(ppm_logits(eng.model, enc["input_ids"], enc["attention_mask"]))

    def shared():
        return torch.tensor(eng.score(texts))

    assert torch.allclose(whole(), shared(), atol=1e-4)
    best = {}
    for name, fn in (("whole", whole), ("shared", shared)) * args.reps:
        t0 = time.perf_counter()
        fn()
        best[name] = min(best.get(name, 1e9), time.perf_counter() - t0)
    n = len(texts)
    print(f"{n} texts ({args.expansions} expansions x {args.candidates} candidates), best of "
          f"{args.reps}: whole {n / best['whole']:.0f} texts/s, shared prefix "
          f"{n / best['shared']:.0f} texts/s, ratio {best['whole'] / best['shared']:.2f}")


if __name__ == "__main__":
    main()
