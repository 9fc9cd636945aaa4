"""Text-generation and scoring engines behind two small interfaces, one file per implementation.

``TextEngine`` turns prompts into sampled continuations that stop at a step delimiter (kept in the
text); ``ScoreEngine`` turns texts into PPM scores in [-1, 1]. ``LMPolicy`` and ``PPMScorer`` adapt
them to the search's ``Policy`` and ``Scorer`` protocols by rendering requests with the step
format. Engines are plain classes (no Ray): the Ray servers in ``actors/`` own one each.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

from tree.protocols import ScoreRequest, StepRequest
from tree.steps import StepFormat


@dataclass(frozen=True)
class GenRequest:
    """``n`` samples continuing ``prompt``; ``seed`` makes them reproducible where the engine can."""

    prompt: str
    n: int = 1
    seed: int | None = None


@dataclass(frozen=True)
class Completion:
    text: str
    """The continuation, ending with the stop string it stopped on (if it stopped on one)."""
    tokens: int
    """Generated tokens (for throughput metrics)."""


class TextEngine(Protocol):
    def generate(self, requests: Sequence[GenRequest], stops: Sequence[str]) -> list[list[Completion]]:
        """For each request, ``n`` completions, each cut after the first stop string it produced."""
        ...


class ScoreEngine(Protocol):
    def score(self, texts: Sequence[str]) -> list[float]:
        """For each text, tanh of the scalar head's output at its last token, in [-1, 1]."""
        ...


class LMPolicy:
    """``Policy`` over a ``TextEngine``: renders (question, steps) with the step format."""

    def __init__(self, engine: TextEngine, fmt: StepFormat = StepFormat()) -> None:
        self.engine, self.fmt = engine, _for_engine(fmt, engine)
        self.tokens_generated = 0  # read by the server for tokens/s metrics

    def propose(self, requests: Sequence[StepRequest]) -> list[list[str]]:
        return self._texts(self.engine.generate(self._gen(requests), self.fmt.stops))

    async def apropose(self, requests: Sequence[StepRequest]) -> list[list[str]]:
        """``propose`` for engines with ``agenerate`` (continuous batching: no waiting for the
        rest of a batch); the servers use it when the engine has one."""
        return self._texts(await self.engine.agenerate(self._gen(requests), self.fmt.stops))

    def _gen(self, requests: Sequence[StepRequest]) -> list[GenRequest]:
        return [GenRequest(self.fmt.render(r.question, r.steps), r.n, r.seed) for r in requests]

    def _texts(self, outs: list[list[Completion]]) -> list[list[str]]:
        self.tokens_generated += sum(c.tokens for cands in outs for c in cands)
        return [[c.text for c in cands] for cands in outs]


class PPMScorer:
    """``Scorer`` over a ``ScoreEngine``: the text scored ends with the step being judged."""

    def __init__(self, engine: ScoreEngine, fmt: StepFormat = StepFormat()) -> None:
        self.engine, self.fmt = engine, _for_engine(fmt, engine)

    def score(self, requests: Sequence[ScoreRequest]) -> list[float]:
        return self.engine.score([self.fmt.scored_text(r.question, r.steps) for r in requests])


def _for_engine(fmt: StepFormat, engine) -> StepFormat:
    """``fmt`` with a chat prompt rendered by the engine's own tokenizer (``StepFormat.chat``)."""
    if not fmt.chat:
        return fmt
    tok = getattr(engine, "tokenizer", None)
    if tok is None:
        raise ValueError(f"format.chat needs an engine with a tokenizer (hf, vllm), not "
                         f"{type(engine).__name__}")
    return fmt.for_tokenizer(tok)


def close(component) -> None:
    """Release a policy's or scorer's engine (vLLM's processes) if it holds one."""
    closer = getattr(getattr(component, "engine", None), "close", None)
    if closer is not None:
        closer()
