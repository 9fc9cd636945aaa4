"""``ProblemQueue``: the work queue search workers pull problems from, with leases.

Why not ``ray.util.queue.Queue``: an item taken from it is gone, so a worker killed mid-problem
would lose its problems. Here a taken problem is *leased* to the worker: it is acknowledged only
after its tree is durably in a shard, and goes back to the queue if the worker dies (the driver
calls ``release``) or stops renewing its lease (``expire``). Acks are idempotent and the shard
writer drops duplicates, so a problem re-run after a false alarm is still written once.
"""

from __future__ import annotations

import time
from collections import deque

import ray


@ray.remote(num_cpus=0)
class ProblemQueue:
    def __init__(self, lease_s: float = 120.0, max_attempts: int = 3) -> None:
        self.lease_s, self.max_attempts = lease_s, max_attempts
        self.attempts: dict[str, int] = {}
        self.failed: dict[str, str] = {}  # id -> last error, after max_attempts failures
        self.pending: deque = deque()
        self.leases: dict[str, tuple[str, float, object]] = {}  # id -> (worker, deadline, problem)
        self.done: set[str] = set()
        self.requeued = 0

    def put(self, problems: list) -> int:
        """Queue problems (skipping ones already done, queued or leased); returns how many."""
        queued = {p.id for p in self.pending}
        added = 0
        for p in problems:
            if p.id in self.done or p.id in self.leases or p.id in queued:
                continue
            self.pending.append(p)
            queued.add(p.id)
            added += 1
        return added

    def take(self, worker: str, k: int) -> list:
        """Up to ``k`` problems, leased to ``worker``."""
        self._expire()
        out = []
        deadline = time.monotonic() + self.lease_s
        while self.pending and len(out) < k:
            p = self.pending.popleft()
            self.leases[p.id] = (worker, deadline, p)
            out.append(p)
        return out

    def renew(self, worker: str) -> int:
        """Extend every lease ``worker`` holds (its heartbeat); returns how many it holds."""
        deadline = time.monotonic() + self.lease_s
        mine = [pid for pid, (w, _, _) in self.leases.items() if w == worker]
        for pid in mine:
            _, _, p = self.leases[pid]
            self.leases[pid] = (worker, deadline, p)
        return len(mine)

    def ack(self, worker: str, problem_id: str) -> None:
        """``problem_id``'s tree is in a shard: done for good."""
        self.done.add(problem_id)
        self.leases.pop(problem_id, None)

    def nack(self, worker: str, problem_id: str, error: str) -> None:
        """The worker could not finish ``problem_id``: retry it elsewhere, up to max_attempts."""
        lease = self.leases.pop(problem_id, None)
        if lease is None or problem_id in self.done:
            return
        n = self.attempts[problem_id] = self.attempts.get(problem_id, 0) + 1
        if n >= self.max_attempts:
            self.failed[problem_id] = error
            self.done.add(problem_id)
        else:
            self.pending.append(lease[2])
            self.requeued += 1

    def release(self, worker: str) -> list[str]:
        """Return every problem leased to ``worker`` (which died) to the front of the queue."""
        back = [(pid, p) for pid, (w, _, p) in self.leases.items() if w == worker]
        for pid, p in back:
            del self.leases[pid]
            self.pending.appendleft(p)
        self.requeued += len(back)
        return [pid for pid, _ in back]

    def _expire(self) -> None:
        now = time.monotonic()
        late = [pid for pid, (_, d, _) in self.leases.items() if d < now]
        for pid in late:
            _, _, p = self.leases.pop(pid)
            self.pending.appendleft(p)
        self.requeued += len(late)

    def stats(self) -> dict:
        self._expire()
        return {"pending": len(self.pending), "leased": len(self.leases), "done": len(self.done),
                "requeued": self.requeued, "failed": dict(self.failed)}
