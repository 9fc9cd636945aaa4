"""``ShardWriter``: streams finished trees into Parquet shards under ``WORKDIR/shards/``.

``write`` returns only once the tree is in a complete (renamed) shard, so a worker that acks a
problem after it can never lose it. Trees already in the shards — from this run or an earlier
one on the same workdir — are dropped, keyed by problem id within the round, so a rerun or a
re-leased problem never duplicates rows.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import ray

from actors import metrics
from rstar import shards


@ray.remote(num_cpus=0)
class ShardWriter:
    def __init__(self, shard_dir: str, round: int, flush_trees: int = 64, flush_s: float = 2.0):
        self.shard_dir, self.round = shard_dir, round
        self.flush_trees, self.flush_s = flush_trees, flush_s
        self.written: set[str] = shards.problem_ids(shard_dir)
        self.preexisting = len(self.written)
        self.solved = 0
        self.buffer: dict[str, list[dict]] = {}
        self.waiters: list[asyncio.Future] = []
        self.timer: asyncio.Task | None = None
        self.prefix = f"part-r{round}-{uuid.uuid4().hex[:8]}"
        self.seq = 0
        self.flush_lock = asyncio.Lock()
        self.started = time.monotonic()

    async def write(self, problem_id: str, rows: list[dict]) -> bool:
        """Buffer one tree's rows; returns after they are durable. False if already written."""
        if problem_id in self.written or problem_id in self.buffer:
            return False
        for r in rows:
            r["round"] = self.round
        self.buffer[problem_id] = rows
        fut = asyncio.get_running_loop().create_future()
        self.waiters.append(fut)
        if len(self.buffer) >= self.flush_trees:
            await self.flush()
        elif self.timer is None:
            self.timer = asyncio.get_running_loop().create_task(self._flush_later())
        await fut
        return True

    async def _flush_later(self) -> None:
        await asyncio.sleep(self.flush_s)
        self.timer = None
        await self.flush()

    async def flush(self) -> None:
        async with self.flush_lock:
            if not self.buffer:
                return
            batch, waiters = self.buffer, self.waiters
            self.buffer, self.waiters = {}, []
            rows = [r for tree_rows in batch.values() for r in tree_rows]
            name = f"{self.prefix}-{self.seq:05d}.parquet"
            self.seq += 1
            try:
                await asyncio.get_running_loop().run_in_executor(
                    None, shards.write_shard, self.shard_dir, rows, name)
            except BaseException as e:
                for f in waiters:
                    if not f.done():
                        f.set_exception(e)
                raise
            self.written.update(batch)
            solved = sum(1 for tree_rows in batch.values()
                         if any(r["terminal"] and r["correct"] for r in tree_rows))
            self.solved += solved
            metrics.get("problems_done").inc(len(batch))
            if solved:
                metrics.get("problems_solved").inc(solved)
            new = len(self.written) - self.preexisting
            if new:
                metrics.get("solve_rate").set(self.solved / new)
            for f in waiters:
                if not f.done():
                    f.set_result(None)

    def stats(self) -> dict:
        return {"written": len(self.written), "new": len(self.written) - self.preexisting,
                "solved": self.solved, "shards": self.seq, "buffered": len(self.buffer)}

    def written_ids(self) -> list[str]:
        return sorted(self.written)
