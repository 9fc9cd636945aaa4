"""The sandbox against hostile and ordinary code: real worker processes, real forks, no mocks.

Every hostile job is followed by a normal one (`assert_healthy`): the pool must keep working.
Tests marked by the `any_sb` fixture run in both isolation levels.
"""

from __future__ import annotations

import asyncio
import dataclasses
import glob
import os
import socket
import threading
import time
import uuid
from pathlib import Path

import psutil
import pytest

import sandbox as sandbox_pkg
from sandbox import ExecResult, Sandbox

REPO = Path(sandbox_pkg.__file__).resolve().parents[1]
TIMEOUT = 2.0
IS_ROOT = os.geteuid() == 0


@pytest.fixture(scope="module")
def sb():
    with Sandbox(workers=2, timeout_s=TIMEOUT) as s:
        yield s


@pytest.fixture(scope="module")
def basic_sb():
    with Sandbox(workers=2, timeout_s=TIMEOUT, isolation="basic") as s:
        yield s


@pytest.fixture(params=["auto", "basic"])
def any_sb(request, sb, basic_sb):
    return sb if request.param == "auto" else basic_sb


def assert_healthy(s: Sandbox) -> None:
    r = s.run("print(6 * 7)")
    assert r.ok and r.stdout == "42\n" and r.error is None, r


def worker_pids(s: Sandbox) -> set[int]:
    return {slot.worker.proc.pid for slot in s._slots if slot.worker is not None}


def escaped(name: str) -> bool:
    """Whether a file named `name` appeared anywhere a job could have put it on the host."""
    dirs = ["/tmp", "/root", "/var/tmp", "/dev/shm", str(REPO)] + glob.glob("/tmp/sandbox-*")
    return any(os.path.lexists(os.path.join(d, name)) for d in dirs)


# -- ordinary behaviour --------------------------------------------------------------------
def test_ok_and_stdout(sb):
    r = sb.run("x = 3*7\nprint(x)")
    assert isinstance(r, ExecResult)
    assert r.ok and r.stdout == "21\n" and r.error is None
    assert not r.timed_out and not r.truncated and r.duration_s > 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.ok = False


def test_isolation_is_reported(sb, basic_sb):
    assert sb.stats()["isolation"] == ("full" if IS_ROOT else "basic")
    assert basic_sb.stats()["isolation"] == "basic"


def test_ordinary_math_code_is_unaffected_by_the_guards(sb):
    code = """
import math, itertools, functools, collections, re, sys
from fractions import Fraction
import sympy
x = sympy.Symbol('x')
print(sorted(sympy.solve(x**2 - 5*x + 6, x)))
print(sum(Fraction(1, k) for k in range(1, 5)))
print([n for n in range(30) if all(n % d for d in range(2, n)) and n > 1][:5])
@functools.lru_cache(None)
def fib(n): return n if n < 2 else fib(n - 1) + fib(n - 2)
print(fib(200) % 1000, math.comb(10, 3), len(list(itertools.permutations(range(4)))))
print(collections.Counter('hello')['l'], re.findall(r'\\d+', 'a1b22'))
"""
    r = sb.run(code)
    assert r.ok, r
    assert r.stdout.splitlines() == ["[2, 3]", "25/12", "[2, 3, 5, 7, 11]", "525 120 24",
                                     "2 ['1', '22']"]


def test_exception_gives_type_and_message(sb):
    r = sb.run("print('before')\n1/0")
    assert not r.ok and r.error == "ZeroDivisionError: division by zero"
    assert r.stdout == "before\n"        # output up to the failure is kept
    assert "Traceback" in r.stderr and "<job>" in r.stderr
    r = sb.run("undefined_name")
    assert r.error == "NameError: name 'undefined_name' is not defined"
    assert_healthy(sb)


def test_syntax_error(sb):
    r = sb.run("def f(:\n    pass")
    assert not r.ok and r.error.startswith("SyntaxError: ")
    assert_healthy(sb)


def test_sys_exit_semantics(sb):
    assert sb.run("import sys\nprint(1)\nsys.exit()").ok
    assert sb.run("exit(0)").ok
    r = sb.run("import sys\nsys.exit(3)")
    assert not r.ok and r.error == "SystemExit: 3"


def test_read_back_own_file(sb):
    r = sb.run("with open('notes.txt', 'w') as f:\n    f.write('hello')\n"
               "import os\nos.makedirs('d/e')\nprint(open('notes.txt').read(), os.listdir('.'))")
    assert r.ok and r.stdout.startswith("hello") and "notes.txt" in r.stdout, r


def test_file_operations_inside_the_job_dir_work(any_sb):
    # shutil.rmtree works through dir_fd-relative calls: the hook must resolve those.
    r = any_sb.run("import os, shutil\n"
                   "os.makedirs('a/b/c'); open('a/b/c/f', 'w').write('x')\n"
                   "os.symlink('/etc/passwd', 'a/link')\n"
                   "shutil.copytree('a', 'copy'); shutil.move('copy', 'moved')\n"
                   "shutil.rmtree('a'); shutil.rmtree('moved')\n"
                   "os.mkdir('d'); os.rename('d', 'e'); os.rmdir('e')\n"
                   "import tempfile\nwith tempfile.NamedTemporaryFile() as f: f.write(b'ok')\n"
                   "print(os.listdir('.'))")
    assert r.ok and r.stdout == "[]\n", r


def test_job_directory_is_fresh_each_time(sb):
    sb.run_many(["open('left_behind.txt', 'w').write('x')"] * 2)
    rs = sb.run_many(["import os; print(os.listdir('.'))"] * 2)
    assert all(r.ok and r.stdout == "[]\n" for r in rs), rs


def test_submit_future_works_with_asyncio(sb):
    async def main():
        futs = [asyncio.wrap_future(sb.submit(f"print({i} ** 2)")) for i in range(6)]
        return await asyncio.gather(*futs)
    rs = asyncio.run(main())
    assert [r.stdout for r in rs] == [f"{i * i}\n" for i in range(6)]


def test_run_many_keeps_order_and_runs_in_parallel(sb):
    code = "import time\nt0 = time.time()\ntime.sleep(0.3)\nprint({i}, t0, time.time())"
    rs = sb.run_many([code.format(i=i) for i in range(4)])
    spans = []
    for i, r in enumerate(rs):
        assert r.ok, r
        idx, start, end = r.stdout.split()
        assert int(idx) == i
        spans.append((float(start), float(end)))
    overlaps = [a for a in spans for b in spans if a is not b and a[0] < b[1] and b[0] < a[1]]
    assert overlaps, f"no two jobs ran concurrently: {spans}"


def test_thread_safety(sb):
    results: dict[tuple[int, int], ExecResult] = {}
    lock = threading.Lock()

    def client(t):
        for j in range(20):
            r = sb.run(f"print({t} * 1000 + {j})")
            with lock:
                results[t, j] = r
    threads = [threading.Thread(target=client, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(results) == 160
    for (t, j), r in results.items():
        assert r.ok and r.stdout == f"{t * 1000 + j}\n", r


# -- hostile jobs, both isolation levels ----------------------------------------------------
def test_state_does_not_leak_between_jobs(any_sb):
    evil = ("import math; math.pi = 3\nimport builtins; builtins.X = 1\n"
            "import sys; sys.modules['evil'] = 1\nimport os; os.environ['EVIL'] = '1'")
    check = ("import math, builtins, sys, os\n"
             "print(math.pi, hasattr(builtins, 'X'), 'evil' in sys.modules, 'EVIL' in os.environ)")
    # One worker, so the second job runs in the very process the first one dirtied.
    with Sandbox(workers=1, timeout_s=TIMEOUT, isolation=any_sb.requested_isolation) as one:
        assert one.run(evil).ok
        assert one.run(check).stdout == "3.141592653589793 False False False\n"


def test_timeouts(any_sb, sb):
    before = any_sb.stats()["timeouts"]
    codes = ["while True: pass", "import time\ntime.sleep(100)"]
    if any_sb is sb:   # a job that swallows the soft timeout is SIGKILLed shortly after
        codes.append("import time\nwhile True:\n    try:\n        time.sleep(10)\n"
                     "    except BaseException:\n        pass")
    t0 = time.monotonic()
    rs = any_sb.run_many(codes)
    for r in rs:
        assert not r.ok and r.timed_out and r.error == f"Timeout: exceeded {TIMEOUT}s", r
        assert TIMEOUT - 0.1 < r.duration_s < TIMEOUT + 1.0, r
    assert time.monotonic() - t0 < 2 * (TIMEOUT + 1.0)
    assert any_sb.stats()["timeouts"] - before == len(codes)
    assert_healthy(any_sb)


def test_output_flood_is_truncated_head_and_tail(any_sb):
    marker_room = 64
    flood, big = any_sb.run_many(["while True: print('x' * 10000)", "print('y' * 10**8)"])
    assert flood.timed_out and flood.truncated
    # The timeout may land between print()'s two writes, so the final newline is optional.
    assert flood.stdout.startswith("x" * 100) and flood.stdout.rstrip("\n").endswith("x" * 100)
    assert "bytes truncated]" in flood.stdout
    assert len(flood.stdout) <= any_sb.output_limit + marker_room
    assert big.ok and big.truncated
    head, tail = big.stdout.split("\n...[")
    assert set(head) == {"y"} and tail.endswith("y\n")
    assert f"[{10**8 + 1 - any_sb.output_limit} bytes truncated]" in big.stdout
    assert len(big.stdout) <= any_sb.output_limit + marker_room
    assert_healthy(any_sb)


def test_crashes_are_reported(any_sb):
    os_exit, segv = any_sb.run_many([
        "import os\nprint('bye')\nos._exit(0)",
        # C-level recursion (map -> Python -> map ...) overflows the C stack: SIGSEGV.
        "import sys\nsys.setrecursionlimit(10**6)\ndef f(n):\n    return sum(map(f, [n + 1]))\nf(0)"])
    assert not os_exit.ok and os_exit.error == "Crashed: exited with status 0 without finishing"
    assert not segv.ok and segv.error == "Crashed: killed by signal SIGSEGV"
    assert_healthy(any_sb)


def test_default_recursion_limit(sb):
    r = sb.run("def f(n): return f(n + 1)\nf(0)")
    assert r.error.startswith("RecursionError: maximum recursion depth exceeded")
    assert_healthy(sb)


@pytest.mark.parametrize("code", ["x = bytearray(10**10)",
                                  "x = []\nwhile True:\n    x.append([0] * 100000)"])
def test_memory_bomb(sb, code):
    r = sb.run(code)
    assert not r.ok and r.error.startswith("MemoryError"), r
    assert_healthy(sb)


def test_fork_bomb(sb):
    me = psutil.Process()
    before = len(me.children(recursive=True))
    r = sb.run("import os\nwhile True:\n    os.fork()")
    assert not r.ok and r.error.startswith("PermissionError"), r
    assert len(me.children(recursive=True)) == before
    assert_healthy(sb)


@pytest.mark.parametrize("code", ["import os\nos.kill(os.getppid(), 9)",
                                  "import os, signal\nos.killpg(0, 9)",
                                  "import os, signal\nos.killpg(os.getpgid(os.getppid()), 9)"])
def test_killing_the_worker_or_group_is_refused(any_sb, code):
    pids = worker_pids(any_sb)
    r = any_sb.run(code)
    assert not r.ok and r.error.startswith("PermissionError"), r
    assert worker_pids(any_sb) == pids
    assert_healthy(any_sb)


@pytest.mark.parametrize("target", ["/tmp/escape_{u}", "../escape_{u}", "/root/escape_{u}",
                                    f"{REPO}/escape_{{u}}"])
def test_writing_outside_the_job_dir_is_refused(any_sb, target):
    u = uuid.uuid4().hex
    path = target.format(u=u)
    rs = any_sb.run_many([f"open({path!r}, 'w').write('x')",
                          f"import os\nos.close(os.open({path!r}, os.O_WRONLY | os.O_CREAT))",
                          f"import pathlib\npathlib.Path({path!r}).write_text('x')"])
    for r in rs:
        assert not r.ok and r.error.startswith("PermissionError"), r
    assert not escaped(f"escape_{u}")
    assert_healthy(any_sb)


def test_deleting_outside_the_job_dir_is_refused(any_sb, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    rs = any_sb.run_many([f"import os\nos.remove({str(victim)!r})",
                          f"import shutil\nshutil.rmtree({str(tmp_path)!r})",
                          f"import os\nos.rename({str(victim)!r}, 'stolen.txt')"])
    assert all(not r.ok and r.error.startswith("PermissionError") for r in rs), rs
    assert victim.read_text() == "keep me"


def test_network_is_blocked(any_sb):
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        srv.setblocking(False)
        port = srv.getsockname()[1]
        r = any_sb.run(f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=1)\n"
                       "print('connected')")
        assert not r.ok and "connected" not in r.stdout, r
        with pytest.raises(BlockingIOError):
            srv.accept()
    assert_healthy(any_sb)


def test_caller_environment_is_not_visible(sb):
    os.environ["SANDBOX_TEST_SECRET"] = "hunter2"
    try:
        r = sb.run("import os\nprint(sorted(os.environ))")
        assert r.ok and "SANDBOX_TEST_SECRET" not in r.stdout
    finally:
        del os.environ["SANDBOX_TEST_SECRET"]


# -- full isolation: the kernel layer holds even when the audit hook is bypassed -------------
needs_full = pytest.mark.skipif(not IS_ROOT, reason="full isolation needs root")


@needs_full
def test_full_runs_as_nobody_without_network(sb):
    r = sb.run("import os\nprint(os.getuid(), os.getgid(), os.getgroups())\n"
               "print([l.split(':')[0].strip() for l in open('/proc/net/dev').readlines()[2:]])")
    assert r.ok and r.stdout == "65534 65534 []\n['lo']\n", r


@needs_full
def test_full_unaudited_writes_stay_private(sb):
    u = uuid.uuid4().hex
    # os.mkfifo raises no audit event, so only the namespaces/uid stand in the way.
    tmp, repo = sb.run_many([f"import os\nos.mkfifo('/tmp/escape_{u}')\n"
                             f"print(os.path.exists('/tmp/escape_{u}'))",
                             f"import os\nos.mkfifo({str(REPO)!r} + '/escape_{u}')"])
    assert tmp.ok and tmp.stdout == "True\n", tmp             # it went into the private tmpfs...
    assert not repo.ok and repo.error.startswith("PermissionError"), repo
    assert not escaped(f"escape_{u}")                         # ...and nothing reached the host


@needs_full
def test_full_unaudited_signal_cannot_hit_the_worker(sb):
    pids = worker_pids(sb)
    # pidfd_send_signal is not audited; the uid drop is what makes this fail.
    r = sb.run("import os, signal\nsignal.pidfd_send_signal(os.pidfd_open(os.getppid()), 9)")
    assert not r.ok and r.error == "PermissionError: [Errno 1] Operation not permitted", r
    assert worker_pids(sb) == pids
    assert_healthy(sb)


def test_basic_survives_a_job_that_kills_its_worker(basic_sb):
    # The documented basic-mode gap: the job really kills its worker. The caller must not care.
    r = basic_sb.run("import os, signal\nsignal.pidfd_send_signal(os.pidfd_open(os.getppid()), 9)")
    assert not r.ok and r.error.startswith("SandboxError: worker died"), r
    assert_healthy(basic_sb)



def test_jobs_cannot_install_signal_handlers(any_sb):
    # The seccomp rule: a handler would dodge the soft timeout and be handed the interrupted
    # frame. Sending and ignoring-by-default signals still work as before.
    r = any_sb.run("import signal\ntry:\n    signal.signal(signal.SIGUSR1, lambda s, f: None)\n"
                   "except OSError as e:\n    print('refused', e.errno)\n"
                   "print(signal.getsignal(signal.SIGALRM) is not None)")
    assert r.ok and r.stdout.split() == ["refused", "1", "True"], r
    r = any_sb.run("import signal\ntry:\n    signal.signal(signal.SIGALRM, signal.SIG_IGN)\n"
                   "except OSError:\n    pass\nwhile True:\n    pass")
    assert r.timed_out and r.duration_s < TIMEOUT + 1.0


def test_the_introspection_lock_is_one_way_and_only_where_raised(sb):
    probe = ("import sys\n"
             "def frames():\n    try:\n        return sys._getframe(0).f_back is None\n"
             "    except ValueError:\n        return 'no frames'\n"
             "def trace():\n    try:\n        sys.settrace(None)\n        return 'ok'\n"
             "    except PermissionError:\n        return 'refused'\n")
    before = sb.run(probe + "print(frames(), trace())")
    after = sb.run(probe + "sys.audit('sandbox.lock_introspection')\nprint(frames(), trace())")
    assert before.stdout.split() == ["False", "ok"], before
    assert after.stdout.split() == ["no", "frames", "refused"], after
    assert sb.run(probe + "print(frames())").stdout.strip() == "False"   # the next job is free
