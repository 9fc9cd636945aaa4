"""Coalesce many small concurrent requests into few large calls (dynamic batching).

Used on both sides of every hop: inside a server (requests from many search workers become one
engine call) and inside a search worker (requests from its many trees become one Ray call). While
a call is running, new requests queue up, so the next call is as large as the load allows — the
engine sees full batches without any fixed batching window.
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable, Sequence


class Batcher:
    """``await submit(items)`` returns ``fn(items)``'s answers for them, batched with others.

    ``fn`` is an async function from a list of items to a list of answers (same length and
    order). At most ``max_inflight`` calls run at once and each takes at most ``max_items``.
    """

    def __init__(self, fn: Callable[[list[Any]], Awaitable[Sequence[Any]]], max_items: int = 256,
                 max_inflight: int = 1) -> None:
        self.fn, self.max_items, self.max_inflight = fn, max_items, max_inflight
        self._pending: list[tuple[list[Any], asyncio.Future]] = []
        self._inflight = 0
        self.calls = 0
        self.items = 0

    async def submit(self, items: Sequence[Any]) -> list[Any]:
        if not items:
            return []
        fut = asyncio.get_running_loop().create_future()
        self._pending.append((list(items), fut))
        self._maybe_start()
        return await fut

    def _maybe_start(self) -> None:
        while self._pending and self._inflight < self.max_inflight:
            self._inflight += 1
            asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        try:
            # Let every coroutine that is ready this tick add its request first.
            await asyncio.sleep(0)
            batch: list[tuple[list[Any], asyncio.Future]] = []
            n = 0
            while self._pending and (not batch or n + len(self._pending[0][0]) <= self.max_items):
                entry = self._pending.pop(0)
                batch.append(entry)
                n += len(entry[0])
            if not batch:
                return
            flat = [x for items, _ in batch for x in items]
            self.calls += 1
            self.items += len(flat)
            try:
                answers = list(await self.fn(flat))
                if len(answers) != len(flat):
                    raise RuntimeError(f"batched call returned {len(answers)} answers for "
                                       f"{len(flat)} items")
            except BaseException as e:  # hand the failure to every caller in the batch
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(e)
                if isinstance(e, asyncio.CancelledError):
                    raise
                return
            k = 0
            for items, fut in batch:
                if not fut.done():
                    fut.set_result(answers[k : k + len(items)])
                k += len(items)
        finally:
            self._inflight -= 1
            self._maybe_start()


def in_thread(fn: Callable[[list[Any]], Sequence[Any]], executor=None) -> Callable:
    """Wrap a blocking batched function so the event loop keeps accepting requests meanwhile."""

    async def call(items: list[Any]) -> Sequence[Any]:
        return await asyncio.get_running_loop().run_in_executor(executor, fn, items)

    return call
