"""Benchmark: vLLM on a CPU with its engine core in the calling process (``EngineConfig.inproc``,
the default on CPUs) against vLLM's own separate engine-core and worker processes, in one run.

Each variant starts in a fresh process (vLLM reads ``VLLM_ENABLE_V1_MULTIPROCESSING`` at start)
through ``VLLMTextEngine``, then generates ``--prompts`` prompts x ``--n`` samples of
``--tokens`` tokens (eos ignored, so both generate the same count). Prints each variant's start
time and tokens/s and their ratios.
Usage: python benchmarks/vllm_inproc.py [--model DIR] [--prompts 128] [--n 4] [--tokens 48]
(no --model: an untrained tiny policy; speed does not depend on the weights).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _vllm_variants import report, run_variants  # noqa: E402 (beside this script)


def run_one(model: str, inproc: bool, prompts: int, n: int, tokens: int) -> dict:
    from actors.engines.vllm import VLLMTextEngine
    from tree.steps import StepFormat

    t0 = time.perf_counter()
    eng = VLLMTextEngine(model, max_model_len=1024, max_tokens=tokens, inproc=inproc)
    start = time.perf_counter() - t0
    fmt = StepFormat()
    texts = [fmt.render(f"(1) Tom has {i} apples. (2) He buys {i + 3} more. How many?", [])
             for i in range(prompts)]
    params = eng._SamplingParams(n=n, temperature=1.0, max_tokens=tokens, ignore_eos=True)
    eng.llm.generate(texts[:4], params, use_tqdm=False)  # warm-up
    t = time.perf_counter()
    outs = eng.llm.generate(texts, params, use_tqdm=False)
    s = time.perf_counter() - t
    eng.close()
    generated = sum(len(c.token_ids) for o in outs for c in o.outputs)
    return {"inproc": inproc, "start_s": round(start, 1), "tokens": generated,
            "tok_s": round(generated / s)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="a policy checkpoint (default: an untrained tiny policy)")
    ap.add_argument("--prompts", type=int, default=128)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=48)
    ap.add_argument("--one", nargs=2, metavar=("MODEL", "INPROC"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        report(run_one(args.one[0], args.one[1] == "1", args.prompts, args.n, args.tokens))
        return
    res = run_variants(__file__, args.model, (("separate processes", "0"), ("in-process", "1")),
                       args)
    a, b = res.values()
    print(f"in-process / separate: tokens/s {b['tok_s'] / a['tok_s']:.2f}, "
          f"start {b['start_s'] / a['start_s']:.2f}")


if __name__ == "__main__":
    main()
