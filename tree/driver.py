"""Drivers that step ``TreeSearch`` coroutines and dispatch their requests.

``run_batched`` (single process): keeps up to ``concurrency`` trees in flight and, each tick, sends
*all* their pending requests of a kind in one batched call — every proposal in one
``Policy.propose``, every program in one ``Executor.run_many``, every score in one
``Scorer.score``. ``drive_async`` runs one tree against awaitable callables; the Ray
``SearchWorker`` runs hundreds of these concurrently and lets the engines batch.
"""

from __future__ import annotations

from typing import Awaitable, Callable, Iterable, Iterator, Sequence

from .mcts import Execute, Op, Propose, Score, TreeSearch
from .node import Tree
from .protocols import ExecOutcome, Executor, Policy, ScoreRequest, Scorer, StepRequest


def run_batched(
    searches: Iterable[TreeSearch],
    policy: Policy,
    executor: Executor,
    scorer: Scorer | None = None,
    concurrency: int = 64,
) -> Iterator[TreeSearch]:
    """Run searches, yielding each as soon as its tree is finished (not in input order)."""
    source = iter(searches)
    active: list[tuple[TreeSearch, Iterator[Op], Op]] = []
    exhausted = False

    def start() -> Iterator[TreeSearch]:
        nonlocal exhausted
        while not exhausted and len(active) < concurrency:
            search = next(source, None)
            if search is None:
                exhausted = True
                return
            gen = search.run()
            try:
                active.append((search, gen, next(gen)))
            except StopIteration:
                yield search

    yield from start()
    while active:
        props = [i for i, (_, _, op) in enumerate(active) if isinstance(op, Propose)]
        execs = [i for i, (_, _, op) in enumerate(active) if isinstance(op, Execute)]
        scores = [i for i, (_, _, op) in enumerate(active) if isinstance(op, Score)]
        answers: dict[int, object] = {}
        if props:
            reqs = [active[i][2].request for i in props]  # type: ignore[union-attr]
            for i, out in zip(props, policy.propose(reqs)):
                answers[i] = out
        if execs:
            flat = [p for i in execs for p in active[i][2].programs]  # type: ignore[union-attr]
            results = list(executor.run_many(flat))
            k = 0
            for i in execs:
                n = len(active[i][2].programs)  # type: ignore[union-attr]
                answers[i], k = results[k : k + n], k + n
        if scores:
            if scorer is None:
                raise ValueError("a search in 'ppm' value mode needs a scorer")
            flat_s = [r for i in scores for r in active[i][2].requests]  # type: ignore[union-attr]
            values = list(scorer.score(flat_s))
            k = 0
            for i in scores:
                n = len(active[i][2].requests)  # type: ignore[union-attr]
                answers[i], k = values[k : k + n], k + n
        still: list[tuple[TreeSearch, Iterator[Op], Op]] = []
        finished: list[TreeSearch] = []
        for i, (search, gen, _) in enumerate(active):
            try:
                still.append((search, gen, gen.send(answers[i])))  # type: ignore[attr-defined]
            except StopIteration:
                finished.append(search)
        active[:] = still
        yield from finished
        yield from start()


async def drive_async(
    search: TreeSearch,
    propose: Callable[[StepRequest], Awaitable[list[str]]],
    execute: Callable[[Sequence[str]], Awaitable[Sequence[ExecOutcome]]],
    score: Callable[[Sequence[ScoreRequest]], Awaitable[list[float]]] | None = None,
) -> Tree:
    """Run one search to completion, awaiting each request (batching happens in the callees)."""
    gen = search.run()
    op = next(gen)
    while True:
        if isinstance(op, Propose):
            answer: object = await propose(op.request)
        elif isinstance(op, Execute):
            answer = await execute(op.programs)
        else:
            if score is None:
                raise ValueError("a search in 'ppm' value mode needs a scorer")
            answer = await score(op.requests)
        try:
            op = gen.send(answer)
        except StopIteration as stop:
            return stop.value
