"""The caller's handle on one worker process: spawn, framed send/recv with deadlines, stop.

Used only by the slot thread that owns the worker (see pool.py).
"""
from __future__ import annotations

import json
import os
import pwd
import select
import shutil
import signal
import struct
import subprocess
import sys
import time

WORKER_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_worker.py")


def _worker_env() -> dict:
    # A fixed, minimal environment: jobs never see the caller's variables
    # (API keys, Ray addresses), and hash randomisation is pinned so printing a
    # set of strings gives the same text in every worker and every run (this is
    # why the worker runs with -s -P rather than -I: -I would ignore PYTHONHASHSEED).
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
            "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1", "NUMEXPR_NUM_THREADS": "1"}


def _nobody_ids() -> tuple[int, int]:
    try:
        pw = pwd.getpwnam("nobody")
        return pw.pw_uid, pw.pw_gid
    except KeyError:
        return 65534, 65534


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


class _WorkerProc:
    """One worker process and its frame pipes; only its slot thread touches it."""

    def __init__(self, cfg: dict, deadline: float):
        self.proc = subprocess.Popen(
            [sys.executable, "-s", "-P", WORKER_SCRIPT], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, bufsize=0, cwd="/",
            env=_worker_env(), close_fds=True)
        self.wfd, self.rfd = self.proc.stdin.fileno(), self.proc.stdout.fileno()
        # Non-blocking writes + poll: a wedged worker can never block the caller.
        os.set_blocking(self.wfd, False)
        self.jobs = 0
        self.info: dict = {}
        try:
            self.send(cfg, deadline)
            msg = self.recv(deadline)
        except Exception:
            self.kill()
            raise
        if msg.get("op") != "ready":
            self.kill()
            raise RuntimeError(f"sandbox worker failed to start: {msg.get('error', msg)}")
        self.info = msg

    def send(self, obj: dict, deadline: float) -> None:
        data = json.dumps(obj).encode()
        view = memoryview(struct.pack(">I", len(data)) + data)
        poller = select.poll()
        poller.register(self.wfd, select.POLLOUT)
        while view:
            self._wait(poller, deadline)
            try:
                view = view[os.write(self.wfd, view):]
            except BlockingIOError:
                pass

    def recv(self, deadline: float) -> dict:
        poller = select.poll()
        poller.register(self.rfd, select.POLLIN)
        n = struct.unpack(">I", self._read_exact(4, poller, deadline))[0]
        return json.loads(self._read_exact(n, poller, deadline))

    def _read_exact(self, n: int, poller, deadline: float) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            self._wait(poller, deadline)
            chunk = os.read(self.rfd, n - len(buf))
            if not chunk:
                raise EOFError("worker closed its pipe")
            buf += chunk
        return bytes(buf)

    @staticmethod
    def _wait(poller, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not poller.poll(remaining * 1000):
            raise TimeoutError("sandbox worker did not answer in time")

    def exit_description(self) -> str:
        try:
            return _describe_exit(self.proc.wait(timeout=1.0))
        except subprocess.TimeoutExpired:
            return "unresponsive"

    def kill(self) -> None:
        # SIGKILL is safe: the running job (if any) has PDEATHSIG=SIGKILL.
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._cleanup()

    def shutdown(self, grace_s: float = 2.0) -> None:
        """EOF on stdin makes an idle worker clean up and exit; kill if it does not."""
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._cleanup()

    def _cleanup(self) -> None:
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass
        base = self.info.get("base")   # basic mode: a SIGKILLed worker cannot remove its dir
        if base and os.path.basename(base).startswith("sandbox-"):
            shutil.rmtree(base, ignore_errors=True)
