"""Benchmark: vLLM on a CPU, the policy engine's dtype as ``VLLMTextEngine`` resolves "auto"
(``cpu_dtype``: a float32 checkpoint stays float32 unless the CPU has bf16 instructions) against
vLLM's own "auto" (bfloat16 on every x86 CPU), generated tokens/s in one run.

Each engine starts in its own process (one vLLM engine per process), generates ``--prompts``
prompts x ``--n`` samples of ``--tokens`` tokens (eos ignored, so both generate the same count).
Usage: python benchmarks/vllm_cpu_dtype.py [--model DIR] [--prompts 64] [--n 4] [--tokens 128]
(no --model: an untrained tiny policy; speed does not depend on the weights).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _vllm_variants import report, run_variants  # noqa: E402 (beside this script)


def run_one(model: str, dtype: str, prompts: int, n: int, tokens: int) -> dict:
    from vllm import LLM, SamplingParams

    from actors.engines.vllm import platform_kwargs
    from tree.steps import StepFormat

    llm = LLM(model=model, dtype=dtype, max_model_len=1024, enable_prefix_caching=True, seed=0,
              **platform_kwargs(1024, 0.9, 1.0, None))
    fmt = StepFormat()
    texts = [fmt.render(f"(1) Tom has {i} apples. (2) He buys {i + 3} more. How many?", [])
             for i in range(prompts)]
    params = SamplingParams(n=n, temperature=1.0, max_tokens=tokens, ignore_eos=True)
    llm.generate(texts[:4], params, use_tqdm=False)  # warm-up
    t = time.perf_counter()
    outs = llm.generate(texts, params, use_tqdm=False)
    s = time.perf_counter() - t
    generated = sum(len(c.token_ids) for o in outs for c in o.outputs)
    return {"dtype": str(llm.llm_engine.vllm_config.model_config.dtype).replace("torch.", ""),
            "tokens": generated, "s": round(s, 2), "tok_s": round(generated / s)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="a policy checkpoint (default: an untrained tiny policy)")
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--one", nargs=2, metavar=("MODEL", "DTYPE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        report(run_one(*args.one, args.prompts, args.n, args.tokens))
        return

    from actors.engines.vllm import cpu_dtype, native_bf16

    def variants(model: str):
        ours = cpu_dtype(model, "auto")
        return (("vllm auto", "auto"), (f"resolved ({ours})", ours))

    res = run_variants(__file__, args.model, variants, args)
    a, b = res.values()
    print(f"native bf16: {native_bf16()}; resolved / vLLM auto tokens/s: "
          f"{b['tok_s'] / a['tok_s']:.2f}")


if __name__ == "__main__":
    main()
