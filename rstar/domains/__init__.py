"""Domains are plug-ins: a problem source, a verifier and a step format (SPEC §8; the protocol is
``rstar.domains.base.Domain``).

Built in: ``arith`` (generated word problems + a scripted teacher: the embedded default),
``math`` (benchmarks with ``\\boxed{}`` answers) and ``code`` (functions verified by hidden unit
tests). Others come from the entry-point group ``rstar.domains``. Modules load lazily, so naming
a domain costs nothing until it is used.
"""

from __future__ import annotations

import functools
import importlib
from importlib.metadata import entry_points

from .base import Domain

ENTRY_POINT_GROUP = "rstar.domains"
BUILTIN = {"arith": "rstar.domains.arith:ArithDomain", "math": "rstar.domains.math:MathDomain",
           "code": "rstar.domains.code:CodeDomain"}
DOMAINS = tuple(BUILTIN)

__all__ = ["Domain", "available_domains", "load_domain", "verifier_for", "with_preload",
           "ENTRY_POINT_GROUP"]


def available_domains() -> dict[str, str]:
    """Every domain name → its ``module:factory``: the built-ins, then the entry points (a
    third-party domain cannot replace a built-in one)."""
    found = dict(BUILTIN)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, ep.value)
    return found


@functools.cache
def load_domain(name: str) -> Domain:
    """The domain called ``name`` (one instance per process)."""
    known = available_domains()
    if name not in known:
        raise ValueError(f"unknown domain {name!r} (known: {', '.join(sorted(known))}; "
                         f"others register in the entry-point group {ENTRY_POINT_GROUP!r})")
    module, _, attr = known[name].partition(":")
    try:
        factory = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"domain {name!r}: cannot load {known[name]!r}: {e}") from e
    domain = factory() if callable(factory) else factory
    missing = [a for a in ("name", "verifier", "preload", "generated", "problems", "load",
                           "teacher") if not hasattr(domain, a)]
    if missing:
        raise TypeError(f"domain {name!r} ({known[name]}) lacks {', '.join(missing)} "
                        "(see rstar.domains.base.Domain)")
    return domain


def with_preload(sandbox_cfg, domain: str):
    """``sandbox_cfg`` (a ``SandboxConfig``) also preloading the domain's modules."""
    import dataclasses

    extra = [m for m in load_domain(domain).preload if m not in sandbox_cfg.preload]
    return dataclasses.replace(sandbox_cfg, preload=(*sandbox_cfg.preload, *extra))


def verifier_for(domain: str):
    """The verifier of a domain by name."""
    return load_domain(domain).verifier
