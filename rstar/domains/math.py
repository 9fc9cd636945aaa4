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


def load_problems(source: str) -> list:
    """A benchmark by name (``rstar.data.BENCHMARKS``) or a JSONL file with question/answer."""
    from rstar.data import load_benchmark, load_jsonl

    return load_jsonl(source) if source.endswith(".jsonl") else load_benchmark(source)


class MathDomain:
    """Math benchmarks (GSM8K, MATH-500, AIME, ...): no generator, no teacher; model code leans
    on sympy, which the sandbox then imports once per worker instead of once per step."""

    name = "math"
    verifier = MathVerifier()
    preload = ("sympy",)
    generated = False

    def problems(self, n, seed, difficulties=(), prefix=""):
        raise ValueError("domain 'math' generates no problems: give `data` (a benchmark name "
                         "or a JSONL path)")

    def load(self, source: str) -> list:
        return load_problems(source)

    def teacher(self, error_rate, fmt):
        raise ValueError("domain 'math' has no scripted teacher: round 1 needs a model "
                         "(bootstrap.kind: vllm or openai)")
