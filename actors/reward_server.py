"""``RewardServer``: the PPM behind a Ray actor, scoring batches of partial solutions."""

from __future__ import annotations

import time

import ray

from actors import metrics
from actors.batcher import Batcher, in_thread
from tree.protocols import ScoreRequest


@ray.remote
class RewardServer:
    def __init__(self, engine_cfg, fmt, name: str = "ppm"):
        from actors.engines.factory import make_scorer

        self.name = name
        self.scorer = make_scorer(engine_cfg, fmt)
        self.batcher = Batcher(in_thread(self._score_batch), max_items=engine_cfg.max_batch)
        self.busy_s = 0.0

    def _score_batch(self, requests: list[ScoreRequest]) -> list[float]:
        t0 = time.perf_counter()
        out = self.scorer.score(requests)
        self.busy_s += time.perf_counter() - t0
        metrics.get("engine_batch_size").observe(len(requests), tags={"server": self.name})
        return out

    async def score(self, requests: list[ScoreRequest]) -> list[float]:
        return await self.batcher.submit(requests)

    def stats(self) -> dict:
        return {"calls": self.batcher.calls, "requests": self.batcher.items, "busy_s": self.busy_s}
