"""``PolicyServer``: one generation engine behind a Ray actor, dynamically batched.

On a cluster the actor is pinned to its GPUs (``num_gpus``, or a placement group for tensor
parallelism, set by whoever creates it); here it runs on CPU. Concurrent ``propose`` calls from
many search workers are merged into one engine call (``actors.batcher``), or, for an engine that
batches continuously itself (vLLM's async engine), handed to it as they come.
"""

from __future__ import annotations

import os
import time

import ray

from actors import metrics
from actors.batcher import Batcher, in_thread
from actors.health import EngineProcesses, describe_failure
from tree.protocols import StepRequest


@ray.remote
class PolicyServer:
    def __init__(self, engine_cfg, fmt, teacher_error_rate: float = 0.15, name: str = "policy",
                 domain: str = "arith"):
        from actors.engines.factory import make_policy

        self.name = name
        t0 = time.perf_counter()
        try:
            self.policy = make_policy(engine_cfg, fmt, teacher_error_rate, serving=True,
                                      domain=domain)
        except Exception as e:  # with the root cause an engine subprocess logged, if any
            raise RuntimeError(describe_failure(e)) from e
        self.procs = EngineProcesses()
        self.start_s = time.perf_counter() - t0  # the engine's start-up
        self.batcher = Batcher(in_thread(self._propose_batch), max_items=engine_cfg.max_batch)
        # An engine that batches continuously gets every request as it comes (no Batcher).
        self.streaming = hasattr(getattr(self.policy, "engine", None), "agenerate")
        self.inflight, self.calls, self.requests, self.since, self.metered = 0, 0, 0, 0.0, 0
        self.busy_s = 0.0
        self.started = time.perf_counter()
        self.first_call = self.last_done = None  # span of engine work, for occupancy figures
        self.error: str | None = None  # the engine's first failure: the run must end on it

    def ready(self) -> str:
        """Answers once the engine has started (the constructor raised otherwise)."""
        return self.name

    def pid(self) -> int:
        """This server's process (its engine's own processes are its children)."""
        return os.getpid()

    def health(self) -> str | None:
        """None while the engine works, else its error (polled by the driver)."""
        self.error = self.error or self.procs.dead()
        return self.error

    def _propose_batch(self, requests: list[StepRequest]) -> list[list[str]]:
        t0 = time.perf_counter()
        if self.first_call is None:
            self.first_call = t0
        try:
            out = self.policy.propose(requests)
        except Exception as e:
            self.error = self.error or describe_failure(e)
            raise
        self.last_done = time.perf_counter()
        self.busy_s += self.last_done - t0
        self._meter(len(requests))
        return out

    def _meter(self, n_requests: int) -> None:
        tags = {"server": self.name}
        metrics.get("engine_batch_size").observe(n_requests, tags=tags)
        made = getattr(self.policy, "tokens_generated", 0) - self.metered
        if made:   # since the last update: concurrent streamed calls are counted once
            self.metered += made
            metrics.get("tokens_generated").inc(made, tags=tags)

    async def propose(self, requests: list[StepRequest]) -> list[list[str]]:
        if not self.streaming:
            return await self.batcher.submit(requests)
        t0 = time.perf_counter()
        if self.first_call is None:
            self.first_call = t0
        if self.inflight == 0:
            self.since = t0
        self.inflight += 1
        self.calls += 1
        self.requests += len(requests)
        try:
            out = await self.policy.apropose(requests)
        except Exception as e:
            self.error = self.error or describe_failure(e)
            raise
        finally:
            self.inflight -= 1
            self.last_done = time.perf_counter()
            if self.inflight == 0:   # busy: some request in the engine
                self.busy_s += self.last_done - self.since
        self._meter(len(requests))
        return out

    def stats(self) -> dict:
        return {
            "calls": self.calls if self.streaming else self.batcher.calls,
            "requests": self.requests if self.streaming else self.batcher.items,
            "tokens": getattr(self.policy, "tokens_generated", 0),
            "busy_s": self.busy_s,
            "up_s": time.perf_counter() - self.started,
            "start_s": self.start_s,
            "active_s": (self.last_done - self.first_call
                         if self.first_call is not None and self.last_done is not None else 0.0),
            "error": self.error,
        }
