"""``SearchWorker``: a stateless actor that turns queued problems into written search trees.

It leases problems from the ``ProblemQueue``, drives many trees at once on one asyncio loop
(``tree.driver.drive_async``), and merges its trees' requests into shared Ray calls to the policy
server, the sandbox pool and the PPM (``actors.batcher``), so the engines see full batches. A tree
is acknowledged only after the ``ShardWriter`` has it in a complete shard. Killing a worker loses
nothing: its leases go back to the queue. Find workers by name in ``ray list actors`` or the
dashboard (class ``SearchWorker``, name ``search-worker-<n>``).
"""

from __future__ import annotations

import asyncio
import os
import time

import ray

from actors import metrics
from actors.batcher import Batcher
from actors.sandbox_pool import SandboxPool
from rstar.domains import verifier_for
from tree.driver import drive_async
from tree.mcts import TreeSearch
from tree.rows import to_rows


@ray.remote
class SearchWorker:
    def __init__(self, worker_id: str, cfg, queue, policy, sandboxes: list, writer,
                 scorer=None) -> None:
        self.id, self.cfg, self.queue, self.writer = worker_id, cfg, queue, writer
        self.verifier = verifier_for(cfg.domain)
        pool = SandboxPool(sandboxes)
        # Requests of all this worker's trees are merged; two calls in flight per hop keeps the
        # pipe full while the previous batch is being answered.
        self.propose_b = Batcher(lambda reqs: policy.propose.remote(reqs),
                                 max_items=cfg.policy.max_batch, max_inflight=2)
        self.exec_b = Batcher(pool.run_many, max_items=256, max_inflight=2 * len(sandboxes))
        self.score_b = (Batcher(lambda reqs: scorer.score.remote(reqs),
                                max_items=cfg.ppm.max_batch, max_inflight=2)
                        if scorer is not None else None)
        self.stopping = False
        self.done = self.failed = self.rollouts = 0
        self.sandbox_s = 0.0

    def pid(self) -> int:
        return os.getpid()

    def stop(self) -> None:
        """Finish the trees in hand, take no more."""
        self.stopping = True

    async def run(self) -> dict:
        """Work until ``stop()``; returns this worker's counters."""
        beat = asyncio.get_running_loop().create_task(self._heartbeat())
        active: set[asyncio.Task] = set()
        try:
            while not (self.stopping and not active):
                room = self.cfg.workers.trees_per_worker - len(active)
                if room > 0 and not self.stopping:
                    for p in await self.queue.take.remote(self.id, room):
                        active.add(asyncio.get_running_loop().create_task(self._solve(p)))
                if not active:
                    await asyncio.sleep(0.2)
                    continue
                _, active = await asyncio.wait(active, timeout=0.2,
                                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            beat.cancel()
        return {"worker": self.id, "done": self.done, "failed": self.failed,
                "rollouts": self.rollouts, "sandbox_s": self.sandbox_s}

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.workers.lease_s / 4)
            await self.queue.renew.remote(self.id)

    async def _solve(self, problem) -> None:
        search = TreeSearch(problem.id, problem.question, problem.answer, self.verifier,
                            self.cfg.mcts, self.cfg.format)
        try:
            tree = await drive_async(search, self._propose, self._execute,
                                     self._score if self.score_b else None)
            await self.writer.write.remote(problem.id, to_rows(tree))
        except Exception as e:  # a server gave up: let the queue retry it elsewhere
            self.failed += 1
            await self.queue.nack.remote(self.id, problem.id, f"{type(e).__name__}: {e}")
            return
        await self.queue.ack.remote(self.id, problem.id)
        self.done += 1
        self.rollouts += search.stats.rollouts
        metrics.get("rollouts").inc(search.stats.rollouts)

    async def _propose(self, request) -> list[str]:
        return (await self.propose_b.submit([request]))[0]

    async def _execute(self, programs):
        t0 = time.perf_counter()
        out = await self.exec_b.submit(programs)
        dt = time.perf_counter() - t0
        self.sandbox_s += dt
        metrics.get("sandbox_latency_s").observe(dt)
        return out

    async def _score(self, requests):
        return await self.score_b.submit(requests)  # type: ignore[union-attr]
