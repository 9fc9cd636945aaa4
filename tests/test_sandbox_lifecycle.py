"""Sandbox pool lifecycle: recycling, dying workers, close(), import hygiene. Real processes only."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

import sandbox as sandbox_pkg
from sandbox import Sandbox

REPO = Path(sandbox_pkg.__file__).resolve().parents[1]
TIMEOUT = 2.0


def assert_healthy(s: Sandbox) -> None:
    r = s.run("print(6 * 7)")
    assert r.ok and r.stdout == "42\n" and r.error is None, r


def worker_pids(s: Sandbox) -> set[int]:
    return {slot.worker.proc.pid for slot in s._slots if slot.worker is not None}


def test_recycling_after_max_jobs_per_worker():
    with Sandbox(workers=1, timeout_s=TIMEOUT, max_jobs_per_worker=3) as s:
        pids = []
        for i in range(7):
            pids.append(next(iter(worker_pids(s))))
            assert s.run(f"print({i})").stdout == f"{i}\n"
        st = s.stats()
    assert st["recycles"] == 2 and st["worker_starts"] == 3 and st["jobs"] == 7
    assert len(set(pids)) == 3
    assert {"jobs", "timeouts", "recycles", "total_exec_s", "isolation"} <= st.keys()


def test_worker_killed_mid_job_gives_sandbox_error():
    with Sandbox(workers=1, timeout_s=TIMEOUT) as s:
        (wpid,) = worker_pids(s)
        fut = s.submit("import time\ntime.sleep(1.5)\nprint('done')")
        for _ in range(100):   # wait until the job process exists
            jobs = psutil.Process(wpid).children()
            if jobs:
                break
            time.sleep(0.01)
        os.kill(wpid, signal.SIGKILL)
        r = fut.result(timeout=10)
        assert not r.ok and r.error.startswith("SandboxError: worker died (killed by SIGKILL)"), r
        assert_healthy(s)
        assert s.stats()["recycles"] == 1
    for p in jobs:   # the orphaned job died with its worker (PDEATHSIG)
        assert not p.is_running() or p.status() == psutil.STATUS_ZOMBIE


def test_close_leaves_no_child_processes():
    me = psutil.Process()
    s = Sandbox(workers=2, timeout_s=1.0)
    ours = worker_pids(s)
    fut = s.submit("import time\ntime.sleep(30)")   # still running when close() is called
    queued = [s.submit("print(1)") for _ in range(20)]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and len(ours) < 3:
        ours |= {c.pid for w in worker_pids(s) for c in psutil.Process(w).children(recursive=True)}
        time.sleep(0.01)
    assert len(ours) >= 3, "never saw a job process"
    s.close()
    assert fut.result().timed_out or fut.result().ok
    assert all(q.done() for q in queued)
    leftover = [p for p in me.children(recursive=True) if p.pid in ours]
    assert leftover == []
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
                   for p in ours)
    with pytest.raises(RuntimeError):
        s.submit("print(1)")
    s.close()   # idempotent


def test_importing_sandbox_pulls_in_neither_ray_nor_torch():
    out = subprocess.run(
        [sys.executable, "-c",
         "import sandbox, sys; assert 'ray' not in sys.modules and 'torch' not in sys.modules"],
        cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_worker_that_died_while_idle_is_replaced_transparently():
    with Sandbox(workers=1, timeout_s=TIMEOUT) as s:
        (wpid,) = worker_pids(s)
        os.kill(wpid, signal.SIGKILL)
        psutil.Process(wpid).wait(timeout=5) if psutil.pid_exists(wpid) else None
        r = s.run("print('still fine')")   # never delivered to the dead worker: no SandboxError
        assert r.ok and r.stdout == "still fine\n", r
        assert worker_pids(s) != {wpid}


def test_results_are_always_valid_utf8():
    with Sandbox(workers=1, timeout_s=TIMEOUT) as s:
        r = s.run("print('\\udcff')\nraise ValueError('bad \\udcff')")
    assert not r.ok and r.error.startswith("ValueError: bad ")
    (r.stdout + r.error + r.stderr).encode("utf-8")   # no lone surrogates survive


def test_bad_arguments_raise_at_the_call_site():
    with pytest.raises(ValueError):
        Sandbox(isolation="paranoid")
    with pytest.raises(ValueError):
        Sandbox(timeout_s=0)
    with Sandbox(workers=1, timeout_s=TIMEOUT) as s:
        with pytest.raises(TypeError):
            s.submit(b"print(1)")


def test_caller_killed_leaves_no_orphans():
    # A Ray actor can die by SIGKILL; its workers and running jobs must die with it (PDEATHSIG).
    script = ("import sys, time, psutil\n"
              f"sys.path.insert(0, {str(REPO)!r})\n"
              "from sandbox import Sandbox\n"
              "sb = Sandbox(workers=2, timeout_s=30)\n"
              "sb.submit('import time; time.sleep(60)')\n"
              "me = psutil.Process()\n"
              "while len(me.children(recursive=True)) < 3: time.sleep(0.01)\n"
              "print(' '.join(str(p.pid) for p in me.children(recursive=True)), flush=True)\n"
              "time.sleep(60)\n")
    caller = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(p) for p in caller.stdout.readline().split()]
        assert len(pids) >= 3, pids
    finally:
        caller.kill()
        caller.wait()
    deadline = time.monotonic() + 5
    alive = pids
    while alive and time.monotonic() < deadline:
        alive = [p for p in pids if psutil.pid_exists(p)
                 and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        time.sleep(0.05)
    assert alive == []


def test_close_from_a_result_callback_does_not_deadlock():
    s = Sandbox(workers=1, timeout_s=TIMEOUT)
    fut = s.submit("print(1)")
    fut.add_done_callback(lambda f: s.close())
    assert fut.result(timeout=10).ok
    deadline = time.monotonic() + 10
    while any(slot.thread.is_alive() for slot in s._slots) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not any(slot.thread.is_alive() for slot in s._slots)
    assert worker_pids(s) == set()
