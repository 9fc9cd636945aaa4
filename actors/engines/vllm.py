"""vLLM engines for GPUs: the policy (``VLLMTextEngine``) and the PPM (``VLLMScoreEngine``).

Written against the vLLM 0.32 offline API (``vllm.LLM``: ``generate`` with per-request
``SamplingParams``; ``classify`` with ``PoolingParams(use_activation=False)`` on a model run with
``runner="pooling"``), the version pinned by the ``[vllm]`` extra. vLLM needs CUDA, so this path is
NOT exercised on the CPU-only CI: its tests skip there. vLLM is imported inside ``__init__`` so this
module imports (and fails clearly) without it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

from .base import Completion, GenRequest
from .openai import cut_at_stop

INSTALL_HINT = ('vLLM is not installed (it needs CUDA); install the GPU extra: '
                'pip install -e ".[vllm]"')


def _import_vllm() -> Any:
    try:
        import vllm
    except ImportError as e:
        raise ImportError(INSTALL_HINT) from e
    return vllm


class VLLMTextEngine:
    """``TextEngine`` over ``vllm.LLM.generate``.

    Each request gets its own ``SamplingParams`` with its ``seed``, so (unlike HF) a request's
    samples do not depend on what it is batched with. Prefix caching is on: the n samples of a
    request and the siblings of a tree node share their prompt. Prompts are tokenised here so a
    prompt of ``max_model_len`` tokens or more gets empty completions instead of vLLM rejecting
    the whole batch, and ``max_tokens`` is capped per request to what fits the context.
    """

    def __init__(self, model_path: str | Path, tensor_parallel_size: int = 1,
                 gpu_memory_utilization: float = 0.9, max_model_len: int = 4096,
                 temperature: float = 1.0, top_p: float = 1.0, max_tokens: int = 256,
                 seed: int = 0, dtype: str = "auto", **llm_kwargs: Any) -> None:
        vllm = _import_vllm()
        self._SamplingParams = vllm.SamplingParams
        self.llm = vllm.LLM(model=str(model_path), tensor_parallel_size=tensor_parallel_size,
                            gpu_memory_utilization=gpu_memory_utilization,
                            max_model_len=max_model_len, enable_prefix_caching=True, seed=seed,
                            dtype=dtype, **llm_kwargs)
        self.tokenizer = self.llm.get_tokenizer()
        self.max_model_len = max_model_len
        self.temperature, self.top_p, self.max_tokens = temperature, top_p, max_tokens

    def generate(self, requests: Sequence[GenRequest],
                 stops: Sequence[str]) -> list[list[Completion]]:
        out: list[list[Completion]] = [[Completion("", 0)] * r.n for r in requests]
        prompts, params, index = [], [], []
        for i, r in enumerate(requests):
            ids = self.tokenizer.encode(r.prompt, add_special_tokens=False)
            room = self.max_model_len - len(ids)
            if r.n <= 0 or not ids or room <= 0:
                continue
            prompts.append({"prompt_token_ids": ids})  # a vllm.inputs.TokensPrompt
            params.append(self._SamplingParams(
                n=r.n, stop=list(stops), include_stop_str_in_output=True, seed=r.seed,
                temperature=self.temperature, top_p=self.top_p,
                max_tokens=min(self.max_tokens, room)))
            index.append(i)
        if not prompts:
            return out
        results = self.llm.generate(prompts, params, use_tqdm=False)
        for i, res in zip(index, results):
            out[i] = [Completion(cut_at_stop(c.text, stops), len(c.token_ids)) for c in res.outputs]
        return out


class VLLMScoreEngine:
    """``ScoreEngine`` over ``vllm.LLM.classify`` for a 1-label sequence-classification PPM.

    ``use_activation=False`` returns the head's raw logit (vLLM would otherwise apply a sigmoid
    for one label); the score is its tanh, as in ``HFScoreEngine``. vLLM pools at the last token
    (no padding there), the same position the HF head reads.
    """

    def __init__(self, model_path: str | Path, tensor_parallel_size: int = 1,
                 gpu_memory_utilization: float = 0.9, max_model_len: int = 4096,
                 dtype: str = "auto", **llm_kwargs: Any) -> None:
        vllm = _import_vllm()
        self._params = vllm.PoolingParams(use_activation=False)
        self.llm = vllm.LLM(model=str(model_path), runner="pooling",
                            tensor_parallel_size=tensor_parallel_size,
                            gpu_memory_utilization=gpu_memory_utilization,
                            max_model_len=max_model_len, dtype=dtype, **llm_kwargs)
        self.tokenizer = self.llm.get_tokenizer()
        self.max_model_len = max_model_len

    def score(self, texts: Sequence[str]) -> list[float]:
        if not texts:
            return []
        # Keep the tail of over-long texts: the score is read at the last token.
        enc = [self.tokenizer.encode(t, add_special_tokens=False) for t in texts]
        prompts = [{"prompt_token_ids": ids[-self.max_model_len:]} for ids in enc]
        results = self.llm.classify(prompts, pooling_params=self._params, use_tqdm=False)
        return [math.tanh(float(r.outputs.probs[0])) for r in results]
