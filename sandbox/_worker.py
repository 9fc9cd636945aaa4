"""Warm sandbox worker: a stdlib-only script started by file path (see pool.py).

Protocol: 4-byte big-endian length + UTF-8 JSON, both ways, over the worker's
original stdin/stdout. First frame in is the config, first frame out is
"ready" (or "fatal"); then one "run" frame in -> one "result" frame out.
Every job runs in a fresh fork() of this process (job side: _jobside.py,
loaded by path so this never imports the sandbox package). Isolation levels
are described in sandbox/__init__.py.
"""
import gc
import importlib.util
import io
import json
import os
import select
import shutil
import signal
import struct
import sys
import time


def _load(name):
    here = os.path.dirname(os.path.realpath(__file__))
    spec = importlib.util.spec_from_file_location(f"_sandbox{name}", os.path.join(here, f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


_js, _iso = _load("_jobside"), _load("_isolate")
_LIBC, PR_SET_PDEATHSIG, STDERR_LIMIT = _js._LIBC, _js.PR_SET_PDEATHSIG, _js.STDERR_LIMIT
HARD_GRACE_S = 0.5          # soft (SIGALRM) timeout -> hard SIGKILL of the process group


def read_frame(fd):
    """Next frame from the caller, or None at EOF (the caller closed us or died)."""
    head = _read_exact(fd, 4)
    body = None if head is None else _read_exact(fd, struct.unpack(">I", head)[0])
    return None if body is None else json.loads(body)


def _read_exact(fd, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def write_frame(fd, obj):
    data = json.dumps(obj).encode()
    data = struct.pack(">I", len(data)) + data
    while data:
        data = data[os.write(fd, data):]


def _supervise(pid, rfd, ctl_fd, deadline, cap):
    """Collect the child's result until it exits or the deadline passes."""
    pidfd = os.pidfd_open(pid)
    os.set_blocking(rfd, False)
    poller = select.poll()
    poller.register(rfd, select.POLLIN)
    poller.register(pidfd, select.POLLIN)
    poller.register(ctl_fd, 0)   # only POLLHUP: the caller went away
    data, exited, killed, caller_gone = bytearray(), False, False, False
    while not exited:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or len(data) > cap:
            killed = "deadline" if remaining <= 0 else "oversized"
            break
        for fd, ev in poller.poll(remaining * 1000):
            if fd == pidfd:
                exited = True
            elif fd == ctl_fd:
                caller_gone = True
            elif ev & (select.POLLIN | select.POLLHUP):
                chunk, eof = _drain(rfd)
                data += chunk
                if eof:
                    # A closed pipe polls as ready forever: stop watching it, or
                    # we would spin and steal the CPU from the exiting child.
                    poller.unregister(rfd)
        if caller_gone:
            killed = "caller"
            break
    if exited:
        data += _drain(rfd)[0]   # whatever the child wrote before exiting is still buffered
    # The unreaped child keeps its pgid reserved, so this cannot hit a recycled group.
    for kill in (os.killpg, os.kill):
        try:
            kill(pid, signal.SIGKILL)
        except OSError:
            pass
    _, status = os.waitpid(pid, 0)
    os.close(pidfd)
    return bytes(data), status, killed


def _drain(fd):
    """Read what is buffered now; returns (data, reached_eof)."""
    buf = bytearray()
    while True:
        try:
            chunk = os.read(fd, 1 << 16)
        except BlockingIOError:
            return buf, False
        if not chunk:
            return buf, True
        buf += chunk


def _clean_text(x):
    # Lone surrogates (e.g. from an exception message) would break any UTF-8
    # writer downstream (Parquet, logs); make them visible escapes instead.
    return str(x or "").encode("utf-8", "backslashreplace").decode("utf-8")


def _result(data, status, killed, cfg):
    t = cfg["timeout_s"]
    if killed == "deadline":
        return {"ok": False, "error": f"Timeout: exceeded {t}s", "timed_out": True}
    if killed == "oversized":
        return {"ok": False, "error": "SandboxError: result message too large"}
    if data:
        try:
            r = json.loads(data)
            return {"ok": bool(r.get("ok")), "stdout": _clean_text(r.get("stdout")),
                    "stderr": _clean_text(r.get("stderr")),
                    "error": r.get("error") and _clean_text(r["error"]),
                    "timed_out": bool(r.get("timed_out")), "truncated": bool(r.get("truncated"))}
        except (ValueError, AttributeError, TypeError):
            return {"ok": False, "error": "SandboxError: malformed result from job"}
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig == signal.SIGXCPU:
            return {"ok": False, "error": "Timeout: CPU time limit exceeded", "timed_out": True}
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = str(sig)
        return {"ok": False, "error": f"Crashed: killed by signal {name}"}
    # os._exit()/a hard exit skipped result reporting: always a failure.
    return {"ok": False, "error": f"Crashed: exited with status {os.waitstatus_to_exitcode(status)} "
                                  "without finishing"}


def _clean(path, keep=()):
    # Jobs may leave read-only or 0o000 dirs; make them writable and retry. `keep`: entries
    # that lead to import dirs bound back into a private tmpfs (never the job's to remove).
    def fix(func, p, _exc):
        try:
            os.chmod(os.path.dirname(p), 0o700)
            os.chmod(p, 0o700)
        except OSError:
            pass
        try:
            func(p)
        except OSError:
            pass
    for name in os.listdir(path):
        if name in keep:
            continue
        p = os.path.join(path, name)
        if os.path.isdir(p) and not os.path.islink(p):
            shutil.rmtree(p, onerror=fix)
        else:
            try:
                os.unlink(p)
            except OSError:
                pass


def _warm_up():
    # The first compile() in a process initialises the AST types (~2 ms); do
    # it (and the capture/report path) once here instead of in every child.
    cap = _js._Capture(64, _js._Guard())
    print("warm", file=cap)
    exec(compile("x = [i * i for i in range(3)]", "<warmup>", "exec"), {})
    json.loads(json.dumps({"stdout": cap.getvalue()}))
    io.StringIO()


def _setup(cfg):
    """Returns (ready-frame fields, job uid/gid or None, [(tmp dir to clean per job, entries to
    keep)], job dir)."""
    info = {"preload_failed": [], "fallback": None}
    for name in cfg["preload"]:
        try:
            __import__(name)
        except Exception as e:
            info["preload_failed"].append(f"{name}: {_js._describe(e, 0)}")
    _warm_up()
    want = cfg["isolation"]
    if want == "auto":
        want = "full" if os.geteuid() == 0 else "basic"
        info["fallback"] = None if want == "full" else "full isolation needs root"
    if want == "full":
        paths = sorted({os.path.realpath(p) for p in sys.path + [os.path.dirname(os.__file__)]
                        if os.path.isdir(p)})
        ids = (cfg["uid"], cfg["gid"])
        t0 = time.perf_counter()
        # "auto" tries it in a child first: a failure halfway (namespaces entered, /tmp
        # covered) would leave this process unable to run even basic jobs.
        why = _iso.full_trial(paths, ids) if cfg["isolation"] == "auto" else None
        if why is None:
            bound = _iso.enter_namespaces(paths)
            bad = _iso.probe(paths, ids)
            if bad:
                raise OSError(f"user {ids[0]} cannot read {bad}")
            info["unshare_ms"] = (time.perf_counter() - t0) * 1e3
            info["bound"] = bound
            os.makedirs("/tmp/job", exist_ok=True)
            dirty = [(d, {os.path.relpath(p, d).split("/")[0] for p in bound
                          if _iso.under(p, [d])})
                     for d, _ in _iso.TMPFS if os.path.ismount(d)]
            return dict(info, isolation="full"), ids, dirty, "/tmp/job"
        info["fallback"] = why
    import tempfile
    base = os.path.realpath(tempfile.mkdtemp(prefix="sandbox-"))
    tempfile.tempdir = None   # mkdtemp cached "/tmp"; jobs must pick up TMPDIR=<job dir>
    return dict(info, isolation="basic", base=base), None, [(base, set())], os.path.join(base, "job")


def main():
    # Keep private copies of the frame pipes and point 0/1 at /dev/null, so a
    # stray print (ours, a library's) can never corrupt the protocol.
    ctl, out = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)
    here = os.path.dirname(os.path.realpath(__file__))
    # Normally absent (-P); our own directory must never shadow stdlib names for jobs.
    sys.path[:] = [p for p in sys.path if os.path.realpath(p or ".") != here]
    cfg = read_frame(ctl)
    if cfg is None:
        return
    _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)   # caller dies -> we die
    if os.getppid() == 1:   # the caller died before prctl took effect
        return
    try:
        info, ids, dirty, jobdir = _setup(cfg)
    except Exception as e:
        write_frame(out, {"op": "fatal", "error": _js._describe(e, 0)})
        return
    write_frame(out, dict(info, op="ready", pid=os.getpid()))
    cap = 8 * (cfg["output_limit"] + STDERR_LIMIT) + (1 << 16)
    try:
        while True:
            job = read_frame(ctl)
            if job is None:
                break
            os.makedirs(jobdir, exist_ok=True)
            if ids:
                os.chown(jobdir, *ids)
            os.chmod(jobdir, 0o700)
            r, w = os.pipe()
            # Frozen objects are skipped by the child's GC, so it does not
            # copy-on-write-touch the whole inherited heap.
            gc.freeze()
            t0 = time.monotonic()
            pid = os.fork()
            if pid == 0:
                try:
                    os.close(r)
                    _js._child(job.pop("code"), w, jobdir, cfg, os.getppid(), ids)
                finally:
                    os._exit(70)
            os.close(w)
            data, status, killed = _supervise(pid, r, ctl, t0 + cfg["timeout_s"] + HARD_GRACE_S, cap)
            os.close(r)
            res = _result(data, status, killed, cfg)
            res.update(op="result", id=job["id"], duration_s=time.monotonic() - t0)
            for d, keep in dirty:
                _clean(d, keep)
            if killed == "caller":
                break
            write_frame(out, res)
    finally:
        if ids is None:
            shutil.rmtree(info["base"], ignore_errors=True)


if __name__ == "__main__":
    main()
