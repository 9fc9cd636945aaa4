"""Per-call CPU budgets for code that may run in any thread (answer grading).

Signals reach only the main thread, so ``signal.alarm``-based timeouts (math-verify's) do nothing
in Ray's threaded actors and thread pools. ``watchdog.budget(seconds)`` instead has a daemon
thread poll the calling thread's CPU clock and raise ``Overrun`` in it when the budget is spent.
``keep_outer_alarm`` re-arms a SIGALRM timer that a library's ``alarm(0)`` cancelled.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

__all__ = ["Overrun", "keep_outer_alarm", "watchdog"]


@contextmanager
def keep_outer_alarm() -> Iterator[None]:
    """math-verify's alarm(0) cancels any SIGALRM timer already armed (e.g.
    pytest-timeout's); re-arm it with the time it had left."""
    delay, interval = signal.getitimer(signal.ITIMER_REAL)
    start = time.monotonic()
    try:
        yield
    finally:
        if delay > 0:
            signal.setitimer(signal.ITIMER_REAL, max(delay - (time.monotonic() - start), 1e-3), interval)


class Overrun(BaseException):
    """Raised in a grading thread whose budget ran out.  A BaseException, so
    library `except Exception` blocks let it unwind."""


def _async_raise(ident: int, exc: type[BaseException] | None) -> None:
    """Schedule `exc` in thread `ident` (None clears a pending one)."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(exc) if exc else None)


class Watchdog:
    """Per-call CPU budgets in any thread: signals reach only the main thread
    and no pre-check bounds sympy's simplify ((sin x+cos x+tan x+x)^10 vs 3
    took 24 s).  A daemon thread polls registered threads' CPU clocks and
    raises `Overrun` in an overrunning one; like a signal it lands between
    bytecodes (one long C call finishes first: see `rstar.grading._too_expensive`).  A
    trace hook made math-verify 2.8x slower; this is free under budget."""

    POLL_S = 0.02

    def __init__(self) -> None:
        # A plain Lock: its C-level __enter__ cannot be interrupted half-way
        # by an Overrun (Condition.__enter__ is Python and could leak it held).
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._active: dict[int, list[Any]] = {}  # ident -> [clock, deadline, fired]
        self._thread: threading.Thread | None = None

    @contextmanager
    def budget(self, seconds: float) -> Iterator[None]:
        ident = threading.get_ident()
        clock: Callable[[], float] = time.monotonic  # if no per-thread clocks
        if hasattr(time, "pthread_getcpuclockid"):
            # CPU time, so GIL contention between graders can't trip budgets.
            clock = partial(time.clock_gettime, time.pthread_getcpuclockid(ident))
        with self._lock:
            self._active[ident] = [clock, clock() + seconds, False]
            if self._thread is None:
                self._start()
        self._wake.set()
        try:
            yield
        finally:
            # Until the entry is gone and a pending Overrun is cleared, one
            # may land even here; retry so none can escape past this point.
            while True:
                try:
                    with self._lock:
                        entry = self._active.pop(ident, None)
                        if entry is not None and entry[2]:
                            _async_raise(ident, None)
                    break
                except Overrun:
                    continue

    def _start(self) -> None:
        # An Overrun landing in a GC/weakref callback is reported as
        # "Exception ignored" (and re-fired later); don't print those.
        previous = sys.unraisablehook
        sys.unraisablehook = lambda u: None if isinstance(u.exc_value, Overrun) else previous(u)
        self._thread = threading.Thread(target=self._run, name="rstar-grading-watchdog", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while self._wake.wait():
            with self._lock:
                for ident, entry in self._active.items():
                    used = entry[0]()
                    if used > entry[1]:
                        entry[1:] = [used + 0.1, True]  # re-fire if it was swallowed
                        _async_raise(ident, Overrun)
                if not self._active:
                    self._wake.clear()  # sleep until the next budget starts
            time.sleep(self.POLL_S)


watchdog = Watchdog()
# A forked child inherits neither the thread nor a sane lock state: start over.
os.register_at_fork(after_in_child=watchdog.__init__)
