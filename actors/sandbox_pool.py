"""Code execution on Ray: ``SandboxActor`` wraps a ``sandbox.Sandbox``; ``SandboxPool`` spreads
batches over several of them (least outstanding work first). CPU only."""

from __future__ import annotations

import asyncio
import dataclasses

import ray

from sandbox import ExecResult, Sandbox


@ray.remote
class SandboxActor:
    def __init__(self, sandbox_cfg):
        self.sandbox = Sandbox(**dataclasses.asdict(sandbox_cfg))

    async def run_many(self, programs: list[str]) -> list[ExecResult]:
        futs = [asyncio.wrap_future(self.sandbox.submit(p)) for p in programs]
        return list(await asyncio.gather(*futs))

    def stats(self) -> dict:
        return self.sandbox.stats()

    def close(self) -> None:
        self.sandbox.close()


class SandboxPool:
    """Client side (inside a search worker): sends each batch to the least-loaded actor."""

    def __init__(self, actors: list) -> None:
        if not actors:
            raise ValueError("SandboxPool needs at least one SandboxActor")
        self.actors = actors
        self.outstanding = [0] * len(actors)

    async def run_many(self, programs: list[str]) -> list[ExecResult]:
        i = min(range(len(self.actors)), key=lambda k: self.outstanding[k])
        self.outstanding[i] += len(programs)
        try:
            return await self.actors[i].run_many.remote(programs)
        finally:
            self.outstanding[i] -= len(programs)
