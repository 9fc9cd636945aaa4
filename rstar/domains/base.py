"""The domain plug-in API: everything that differs between problem domains, in one protocol.

A domain says where problems come from (generated pools with a difficulty knob, and benchmark or
JSONL sources), how a final answer is verified (``tree.protocols.Verifier``, or
``ProgramVerifier`` for hidden unit tests), which modules its programs lean on, and optionally a
scripted teacher for offline bootstrap. Nothing in ``tree/``, ``actors/`` or ``trainers/`` knows
which domain runs: they receive its problems, verifier and teacher.

Third-party domains register a factory (a class or a function returning a ``Domain``) in the
Python entry-point group ``rstar.domains``::

    [project.entry-points."rstar.domains"]
    mydomain = "my_package.domain:MyDomain"

and are picked by ``domain: mydomain`` in any config.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, Sequence, runtime_checkable

if TYPE_CHECKING:
    from rstar.data import Problem
    from tree.protocols import Policy, Verifier
    from tree.steps import StepFormat


@runtime_checkable
class Domain(Protocol):
    name: str
    """The name configs use (``domain: NAME``)."""
    verifier: "Verifier"
    """Judges a trajectory's final step against a problem's ``answer`` (its gold)."""
    preload: tuple[str, ...]
    """Modules the sandbox imports once per worker for this domain's programs (e.g. sympy)."""
    generated: bool
    """Whether ``problems`` generates pools (else problems come only from ``load``)."""

    def problems(self, n: int, seed: int, difficulties: Sequence[int] = (),
                 prefix: str = "") -> list["Problem"]:
        """``n`` generated problems, difficulties cycling through ``difficulties`` (empty: the
        domain's default range), ``meta["difficulty"]`` set; deterministic in ``seed``; ids
        start with ``prefix``. Raises ValueError if the domain generates none."""
        ...

    def load(self, source: str) -> list["Problem"]:
        """Problems from a benchmark name or a JSONL path; bad rows raise an error naming the
        file, line and field."""
        ...

    def teacher(self, error_rate: float, fmt: "StepFormat") -> "Policy":
        """A scripted policy for round 1 offline (``engine.kind: scripted``); raises
        ValueError if the domain has none."""
        ...

    # Optional: ``audit(question, solution) -> (difficulty, bool)``, whether a verified solution
    # really solves its problem (arith: its code computes the question's operations), reported
    # per round as ``sft_computes_frac``; never used by the search.
