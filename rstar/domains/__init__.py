"""Domains are plug-ins: a problem source, a verifier and a step format (SPEC §8).

``arith`` is the embedded default (generated problems + a scripted teacher); ``math`` grades any
benchmark with ``\\boxed{}`` answers. Nothing in ``tree/`` or the trainers knows which is in use.
"""

from __future__ import annotations

from .math import MathVerifier

DOMAINS = ("arith", "math")


def verifier_for(domain: str) -> MathVerifier:
    """The verifier of a domain by name."""
    if domain in ("arith", "math"):
        return MathVerifier()
    raise ValueError(f"unknown domain {domain!r} (known: {', '.join(DOMAINS)})")
