"""Math: the answer is the last ``\\boxed{}`` of a step, checked by symbolic/numeric equivalence."""

from __future__ import annotations

from dataclasses import dataclass

from rstar.grading import equivalent, extract_answer


@dataclass(frozen=True)
class MathVerifier:
    """``Verifier`` protocol for math (and for arith, whose answers are integers in ``\\boxed{}``)."""

    def extract(self, step: str) -> str | None:
        return extract_answer(step)

    def check(self, answer: str | None, gold: str) -> bool:
        return equivalent(answer, gold)
