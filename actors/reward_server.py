"""``RewardServer``: the PPM behind a Ray actor, scoring batches of partial solutions."""

from __future__ import annotations

import os
import time

import ray

from actors import metrics
from actors.batcher import Batcher, in_thread
from actors.health import EngineProcesses, describe_failure
from tree.protocols import ScoreRequest


@ray.remote
class RewardServer:
    def __init__(self, engine_cfg, fmt, name: str = "ppm"):
        from actors.engines.factory import make_scorer

        self.name = name
        try:
            self.scorer = make_scorer(engine_cfg, fmt)
        except Exception as e:
            raise RuntimeError(describe_failure(e)) from e
        self.procs = EngineProcesses()
        self.batcher = Batcher(in_thread(self._score_batch), max_items=engine_cfg.max_batch)
        self.busy_s = 0.0
        self.error: str | None = None  # the engine's first failure: the run must end on it

    def ready(self) -> str:
        return self.name

    def pid(self) -> int:
        """This server's process (its engine's own processes are its children)."""
        return os.getpid()

    def health(self) -> str | None:
        self.error = self.error or self.procs.dead()
        return self.error

    def _score_batch(self, requests: list[ScoreRequest]) -> list[float]:
        t0 = time.perf_counter()
        try:
            out = self.scorer.score(requests)
        except Exception as e:
            self.error = self.error or describe_failure(e)
            raise
        self.busy_s += time.perf_counter() - t0
        metrics.get("engine_batch_size").observe(len(requests), tags={"server": self.name})
        return out

    async def score(self, requests: list[ScoreRequest]) -> list[float]:
        return await self.batcher.submit(requests)

    def stats(self) -> dict:
        return {"calls": self.batcher.calls, "requests": self.batcher.items, "busy_s": self.busy_s,
                "error": self.error}
