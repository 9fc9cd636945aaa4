"""The small interfaces the search talks to. Structural (``typing.Protocol``): implement, don't inherit.

Every call is *batched* (a sequence of requests in, a list of answers out) so one engine call can
serve many trees; the search itself never calls them — it yields requests (see ``tree.mcts``) and
a driver (``tree.driver``, or the Ray ``SearchWorker``) decides how to batch and dispatch them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence, runtime_checkable


@dataclass(frozen=True)
class StepRequest:
    """Ask a policy for ``n`` next steps after ``steps`` for ``question``."""

    question: str
    steps: tuple[str, ...]
    n: int
    seed: int
    """Per-request sampling seed drawn from the tree's RNG: results do not depend on how requests
    from many trees were interleaved or batched (engines that cannot seed per request say so)."""
    problem_id: str = ""


@dataclass(frozen=True)
class ScoreRequest:
    """Ask a scorer (the PPM) for the value in [-1, 1] of the last of ``steps``."""

    question: str
    steps: tuple[str, ...]


@runtime_checkable
class Policy(Protocol):
    def propose(self, requests: Sequence[StepRequest]) -> list[list[str]]:
        """For each request, up to ``n`` candidate next steps (each ending with its delimiter)."""
        ...


@runtime_checkable
class Scorer(Protocol):
    def score(self, requests: Sequence[ScoreRequest]) -> list[float]:
        """For each request, a score in [-1, 1] for its last step."""
        ...


@runtime_checkable
class Verifier(Protocol):
    def extract(self, step: str) -> str | None:
        """The final answer stated in a step, or None if the step states none (not terminal)."""
        ...

    def check(self, answer: str | None, gold: str) -> bool:
        """Whether ``answer`` matches the ground truth. Must not raise."""
        ...


@runtime_checkable
class ProgramVerifier(Protocol):
    """A verifier that judges a solution by running its program against hidden tests (the code
    domain). The search asks for the test job, runs it in the sandbox like any step, and reads
    the outcome; ``check`` is then not used for grading."""

    def extract(self, step: str) -> str | None:
        """As ``Verifier.extract``: what the final step states (None: not an answer step)."""
        ...

    def check(self, answer: str | None, gold: str) -> bool:
        ...

    def test_program(self, program: str, gold: str) -> tuple[str, str]:
        """(the source of a sandbox job that runs ``program`` against the tests in ``gold``, a
        token that job prints only when every test passed)."""
        ...

    def passed(self, outcome: "ExecOutcome", token: str) -> bool:
        """Whether a test job's outcome says every test passed."""
        ...


class ExecOutcome(Protocol):
    """What the search reads from an execution (``sandbox.ExecResult`` has these and more)."""

    ok: bool
    stdout: str
    error: str | None
    duration_s: float


@runtime_checkable
class Executor(Protocol):
    def run_many(self, programs: Sequence[str]) -> Sequence[ExecOutcome]:
        """Run each program in isolation; results in the same order."""
        ...
