"""Sandbox: a thread-safe pool of warm worker processes that fork once per job.

The caller process never executes job code. Each worker slot owns one
long-lived `_worker.py` process and one thread; all slots pull from one
shared queue, so run_many() spreads jobs over the workers. See the package
docstring for the isolation guarantees.
"""
from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import time
from concurrent.futures import Future
from typing import Iterable, Sequence

from ._proc import _nobody_ids, _WorkerProc
from .result import ExecResult

log = logging.getLogger("sandbox")

DEFAULT_PRELOAD = ("math", "fractions", "itertools", "collections", "functools", "re")
ISOLATION_LEVELS = ("auto", "full", "basic")
# What a job can do at each level (the package docstring has the details).
CONSEQUENCES = {
    "full": "jobs run as nobody with no network, write only to private tmpfs mounts, and "
            "cannot signal the caller",
    "basic": "jobs run as the caller's user with its network and files, kept out only by "
             "audit hooks (not a security boundary); fine for trusted or merely buggy code",
}
# The worker SIGKILLs a job at timeout + 0.5 s; this extra slack only matters if
# the worker itself wedges (it also covers cleaning up a big job directory).
CALLER_GRACE_S = 5.0
STARTUP_TIMEOUT_S = 60.0
_STOP = object()


class _Slot:
    """A worker process plus the thread that feeds it jobs from the shared queue."""

    def __init__(self, sb: "Sandbox", index: int):
        self.sb, self.index = sb, index
        self.worker: _WorkerProc | None = None
        self.start_error: BaseException | None = None
        self.ready = threading.Event()
        self.next_id = 0
        # Workers are spawned from this thread only: PR_SET_PDEATHSIG in the
        # worker fires when the *spawning thread* exits, so it must outlive them.
        self.thread = threading.Thread(target=self._loop, name=f"sandbox-slot-{index}", daemon=True)

    def _loop(self) -> None:
        try:
            self.worker = self.sb._spawn()
        except BaseException as e:
            self.start_error = e
        self.ready.set()
        while True:
            item = self.sb._queue.get()
            if item is _STOP:
                break
            code, fut = item
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                res, recycle = self._execute(code)
            except BaseException as e:   # a bug here must not kill the slot or hang the caller
                res, recycle = ExecResult.failure(f"SandboxError: internal error: {e!r}"), True
            if recycle:
                # Before delivering the result, so that when run() returns the pool
                # is back at full strength and stats() are settled. Recycles are rare
                # (limits, crashes, every max_jobs_per_worker jobs); ~0.1 s each.
                self._replace_worker()
            self.sb._account(res)
            fut.set_result(res)
        if self.worker is not None:
            self.worker.shutdown()
            self.worker = None

    def _execute(self, code: str) -> tuple[ExecResult, bool]:
        sb = self.sb
        if self.worker is None:
            try:
                self.worker = sb._spawn()
            except Exception as e:
                return ExecResult.failure(f"SandboxError: could not start a worker: {e}"), False
        self.next_id += 1
        frame = {"op": "run", "id": self.next_id, "code": code}
        t0 = time.monotonic()
        deadline = t0 + sb.timeout_s + CALLER_GRACE_S
        w = self.worker
        if w.proc.poll() is not None:   # died while idle: replace it, the job has not run
            w = self._fresh_worker()
            if w is None:
                return ExecResult.failure("SandboxError: could not restart a dead worker"), False
        try:
            try:
                w.send(frame, deadline)
            except BrokenPipeError:   # died just now; nothing was delivered, so retry once
                w = self._fresh_worker()
                if w is None:
                    return ExecResult.failure("SandboxError: could not restart a dead worker"), False
                w.send(frame, deadline)
            w.jobs += 1
            msg = w.recv(deadline)
        except TimeoutError:
            w.kill()
            self.worker = None
            return ExecResult.failure("SandboxError: worker unresponsive; killed and replaced",
                                      time.monotonic() - t0), True
        except (EOFError, OSError, ValueError) as e:
            how = w.exit_description()
            w.kill()
            self.worker = None
            return ExecResult.failure(f"SandboxError: worker died ({how}) while running the job"
                                      f" [{type(e).__name__}]", time.monotonic() - t0), True
        res = ExecResult(ok=bool(msg.get("ok")), stdout=str(msg.get("stdout") or ""),
                         error=msg.get("error"), timed_out=bool(msg.get("timed_out")),
                         duration_s=float(msg.get("duration_s") or 0.0),
                         truncated=bool(msg.get("truncated")), stderr=str(msg.get("stderr") or ""))
        # Fork-per-job already isolates jobs; replacing the worker after a limit hit
        # or crash is cheap insurance against anything we did not foresee.
        recycle = (res.timed_out or res.error_type in ("MemoryError", "Crashed", "SandboxError")
                   or w.jobs >= sb.max_jobs_per_worker)
        return res, recycle

    def _fresh_worker(self) -> _WorkerProc | None:
        self.worker.kill()
        self.worker = None
        self.sb._count("recycles")
        try:
            self.worker = self.sb._spawn()
        except Exception as e:
            log.warning("sandbox: could not restart worker %d: %s", self.index, e)
        return self.worker

    def _replace_worker(self) -> None:
        if self.worker is not None:
            self.worker.shutdown()
            self.worker = None
        self.sb._count("recycles")
        if not self.sb._closed:   # respawn now so the next job does not pay the startup
            try:
                self.worker = self.sb._spawn()
            except Exception as e:
                log.warning("sandbox: could not restart worker %d: %s", self.index, e)

    def kill_worker(self) -> None:
        w = self.worker
        if w is not None:
            w.kill()


class Sandbox:
    """Run untrusted Python snippets in forked, resource-limited processes.

    >>> with Sandbox(timeout_s=5.0, memory_mb=512, workers=2) as sb:
    ...     sb.run("print(3*7)").stdout
    '21\\n'
    """

    def __init__(self, timeout_s: float = 5.0, memory_mb: int = 512, workers: int | None = None,
                 output_limit: int = 8192, max_jobs_per_worker: int = 1000,
                 preload: Sequence[str] = DEFAULT_PRELOAD, isolation: str = "auto"):
        if isolation not in ISOLATION_LEVELS:
            raise ValueError(f"isolation must be one of {ISOLATION_LEVELS}, got {isolation!r}")
        if timeout_s <= 0 or memory_mb <= 0 or output_limit < 2 or max_jobs_per_worker < 1:
            raise ValueError("timeout_s, memory_mb, output_limit and max_jobs_per_worker "
                             "must be positive")
        self.timeout_s, self.memory_mb = float(timeout_s), int(memory_mb)
        self.workers = int(workers or os.cpu_count() or 1)
        self.output_limit, self.max_jobs_per_worker = int(output_limit), int(max_jobs_per_worker)
        self.preload, self.requested_isolation = tuple(preload), isolation
        self.isolation: str | None = None
        self.fallback: str | None = None   # why "auto" got basic instead of full, if it did
        uid, gid = _nobody_ids()
        self._cfg = {"op": "init", "timeout_s": self.timeout_s, "memory_mb": self.memory_mb,
                     "output_limit": self.output_limit, "preload": list(self.preload),
                     "isolation": isolation, "uid": uid, "gid": gid}
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closed = False
        self._warned: set[str] = set()
        self._stats = {"jobs": 0, "ok": 0, "errors": 0, "timeouts": 0, "crashes": 0,
                       "sandbox_errors": 0, "recycles": 0, "worker_starts": 0,
                       "total_exec_s": 0.0, "worker_start_s": 0.0, "namespace_setup_ms": 0.0}
        self._slots = [_Slot(self, i) for i in range(self.workers)]
        for slot in self._slots:
            slot.thread.start()
        for slot in self._slots:
            slot.ready.wait(STARTUP_TIMEOUT_S + 5)
        errors = [s.start_error for s in self._slots if s.start_error or not s.ready.is_set()]
        if errors:
            self.close()
            raise RuntimeError(f"sandbox: could not start workers: {errors[0]}")
        atexit.register(self.close)

    # -- public API ---------------------------------------------------------------
    def submit(self, code: str) -> "Future[ExecResult]":
        if not isinstance(code, str):
            raise TypeError(f"code must be str, not {type(code).__name__}")
        fut: Future = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("Sandbox is closed")
            self._queue.put((code, fut))
        return fut

    def run(self, code: str) -> ExecResult:
        return self.submit(code).result()

    def run_many(self, codes: Iterable[str]) -> list[ExecResult]:
        futures = [self.submit(c) for c in codes]
        return [f.result() for f in futures]

    def stats(self) -> dict:
        with self._lock:
            out = dict(self._stats)
        out.update(isolation=self.isolation, isolation_fallback=self.fallback, workers=self.workers,
                   alive_workers=sum(1 for s in self._slots if s.worker is not None))
        return out

    def fallback_note(self) -> str | None:
        """One line on a fallback to weaker isolation: why, and what it means; None if none."""
        if not self.fallback:
            return None
        return f"{self.isolation} isolation instead of full ({self.fallback}): {CONSEQUENCES[self.isolation]}"

    def close(self) -> None:
        """Fail queued jobs, let running ones finish, stop every worker and job process."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not _STOP and item[1].set_running_or_notify_cancel():
                item[1].set_result(
                    ExecResult.failure("SandboxError: sandbox closed before the job ran"))
        for _ in self._slots:
            self._queue.put(_STOP)
        for slot in self._slots:
            # close() from a future callback runs on a slot thread: it cannot join
            # itself, and it stops its own worker after delivering the result.
            if slot.thread.is_alive() and slot.thread is not threading.current_thread():
                slot.thread.join(self.timeout_s + CALLER_GRACE_S + 5)
        for slot in self._slots:   # only reached with a live worker if a thread is stuck
            if slot.thread is not threading.current_thread():
                slot.kill_worker()
        atexit.unregister(self.close)

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"Sandbox(workers={self.workers}, timeout_s={self.timeout_s}, "
                f"memory_mb={self.memory_mb}, isolation={self.isolation!r}, closed={self._closed})")

    # -- internals used by the slots ---------------------------------------------
    def _spawn(self) -> _WorkerProc:
        t0 = time.monotonic()
        w = _WorkerProc(self._cfg, t0 + STARTUP_TIMEOUT_S)
        with self._lock:
            self._stats["worker_starts"] += 1
            self._stats["worker_start_s"] += time.monotonic() - t0
            # Summed unshare + mounts + probe time (full mode), to show it stays cheap.
            self._stats["namespace_setup_ms"] += w.info.get("unshare_ms", 0.0)
            first = self.isolation is None
            self.isolation = self.isolation or w.info.get("isolation")
            if first and w.info.get("fallback"):
                self.fallback = w.info["fallback"]
            notes = [self.fallback_note()] if first and self.fallback else []
            notes += [f"preload failed: {p}" for p in w.info.get("preload_failed", ())]
            new = [n for n in notes if n and n not in self._warned]
            self._warned.update(new)
        for n in new:
            log.warning("sandbox: %s", n)
        if first:
            log.info("sandbox: %s isolation (requested %r)", self.isolation, self.requested_isolation)
        if w.info.get("isolation") != self.isolation:
            log.warning("sandbox: worker isolation %s differs from %s",
                        w.info.get("isolation"), self.isolation)
        log.debug("sandbox: worker %s started (%s isolation)",
                  w.info.get("pid"), w.info.get("isolation"))
        return w

    def _count(self, key: str) -> None:
        with self._lock:
            self._stats[key] += 1

    def _account(self, res: ExecResult) -> None:
        with self._lock:
            s = self._stats
            s["jobs"] += 1
            s["ok" if res.ok else "errors"] += 1
            s["timeouts"] += res.timed_out
            s["crashes"] += res.error_type == "Crashed"
            s["sandbox_errors"] += res.error_type == "SandboxError"
            s["total_exec_s"] += res.duration_s
