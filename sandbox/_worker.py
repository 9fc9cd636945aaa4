"""Warm sandbox worker: a stdlib-only script started by file path (see pool.py).

Protocol: 4-byte big-endian length + UTF-8 JSON, both ways, over the worker's
original stdin/stdout. First frame in is the config, first frame out is
"ready" (or "fatal"); then one "run" frame in -> one "result" frame out.
Every job runs in a fresh fork() of this process (job side: _jobside.py,
loaded by path so this never imports the sandbox package). Isolation levels
are described in sandbox/__init__.py.
"""
import ctypes
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


def _load_jobside():
    here = os.path.dirname(os.path.realpath(__file__))
    spec = importlib.util.spec_from_file_location("_sandbox_jobside", os.path.join(here, "_jobside.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


_js = _load_jobside()
_LIBC, PR_SET_PDEATHSIG, STDERR_LIMIT = _js._LIBC, _js.PR_SET_PDEATHSIG, _js.STDERR_LIMIT
CLONE_NEWNS, CLONE_NEWNET = 0x00020000, 0x40000000
MS_NOSUID, MS_NODEV, MS_BIND, MS_REC, MS_PRIVATE = 2, 4, 4096, 16384, 1 << 18
HARD_GRACE_S = 0.5          # soft (SIGALRM) timeout -> hard SIGKILL of the process group
# Private tmpfs mounts in full mode: these are the world-writable places on a
# typical host, so covering them leaves `nobody` no shared writable directory.
TMPFS = (("/tmp", "64m"), ("/var/tmp", "16m"), ("/dev/shm", "16m"), ("/run/lock", "1m"))


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


def _clean(path):
    # Jobs may leave read-only or 0o000 dirs; make them writable and retry.
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
        p = os.path.join(path, name)
        if os.path.isdir(p) and not os.path.islink(p):
            shutil.rmtree(p, onerror=fix)
        else:
            try:
                os.unlink(p)
            except OSError:
                pass


def _check(rc, what):
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _enter_namespaces(paths):
    """Private net + mount namespace for this worker and its jobs (full mode)."""
    _check(_LIBC.unshare(CLONE_NEWNS | CLONE_NEWNET), "unshare")
    # Without MS_PRIVATE the tmpfs mounts below could propagate to the host.
    _check(_LIBC.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "make / private")
    _expose_for_nobody(paths)
    for path, size in TMPFS:
        if os.path.isdir(path) and not os.path.islink(path):
            opts = f"size={size},nr_inodes=16384,mode=1777".encode()
            _check(_LIBC.mount(b"tmpfs", path.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, opts),
                   f"mount tmpfs on {path}")


def _expose_for_nobody(paths):
    """Make Python's own dirs reachable for `nobody` without touching the host.

    E.g. Python in /root/.pyenv with /root at 0700: nobody could not import
    lazily-loaded stdlib modules. Cover the closed ancestor with a 0755 tmpfs
    (which also hides the rest of it from jobs) and bind the needed entries back.
    """
    wanted = {}
    for p in paths:
        parts = p.strip("/").split("/")
        for i in range(len(parts) - 1):
            anc = "/" + "/".join(parts[:i])
            if not os.stat(anc).st_mode & 0o001:
                wanted.setdefault(anc, set()).add(parts[i])
                break
    for anc, names in wanted.items():
        fds = {n: os.open(os.path.join(anc, n), os.O_PATH) for n in names}
        _check(_LIBC.mount(b"tmpfs", anc.encode(), b"tmpfs", MS_NOSUID | MS_NODEV,
                           b"size=1m,mode=0755"), f"mount tmpfs on {anc}")
        for n, fd in fds.items():
            target = os.path.join(anc, n)
            if os.path.isdir(f"/proc/self/fd/{fd}"):
                os.mkdir(target)
            else:
                open(target, "w").close()
            _check(_LIBC.mount(f"/proc/self/fd/{fd}".encode(), target.encode(), None,
                               MS_BIND | MS_REC, None), f"bind {target}")
            os.close(fd)


def _probe(paths, ids):
    """Fork once as `nobody` and list every import dir: full mode must not break imports."""
    pid = os.fork()
    if pid == 0:
        i = -1   # exit code 1 = could not drop privileges, 2+i = paths[i] unreadable
        try:
            os.setgroups([])
            os.setgid(ids[1])
            os.setuid(ids[0])
            for i, p in enumerate(paths):
                os.listdir(p)
            i = -2
        finally:
            os._exit(2 + i)
    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    return None if code == 0 else paths[code - 2] if 2 <= code < 2 + len(paths) else "probe"


def _warm_up():
    # The first compile() in a process initialises the AST types (~2 ms); do
    # it (and the capture/report path) once here instead of in every child.
    cap = _js._Capture(64, _js._Guard())
    print("warm", file=cap)
    exec(compile("x = [i * i for i in range(3)]", "<warmup>", "exec"), {})
    json.loads(json.dumps({"stdout": cap.getvalue()}))
    io.StringIO()


def _setup(cfg):
    """Returns (ready-frame fields, job uid/gid or None, tmp dirs to clean per job, job dir)."""
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
    if want == "full":
        paths = sorted({os.path.realpath(p) for p in sys.path + [os.path.dirname(os.__file__)]
                        if os.path.isdir(p)})
        ids = (cfg["uid"], cfg["gid"])
        t0 = time.perf_counter()
        try:
            _enter_namespaces(paths)
            bad = _probe(paths, ids)
            if bad:
                raise OSError(f"user {ids[0]} cannot read {bad}")
            info["unshare_ms"] = (time.perf_counter() - t0) * 1e3
            os.makedirs("/tmp/job", exist_ok=True)
            private_tmp = [d for d, _ in TMPFS if os.path.ismount(d)]
            return dict(info, isolation="full"), ids, private_tmp, "/tmp/job"
        except OSError as e:
            if cfg["isolation"] == "full":
                raise
            info["fallback"] = f"full isolation unavailable ({e}); using basic"
    import tempfile
    base = os.path.realpath(tempfile.mkdtemp(prefix="sandbox-"))
    tempfile.tempdir = None   # mkdtemp cached "/tmp"; jobs must pick up TMPDIR=<job dir>
    return dict(info, isolation="basic", base=base), None, [base], os.path.join(base, "job")


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
                    _js._child(job["code"], w, jobdir, cfg, os.getppid(), ids)
                finally:
                    os._exit(70)
            os.close(w)
            data, status, killed = _supervise(pid, r, ctl, t0 + cfg["timeout_s"] + HARD_GRACE_S, cap)
            os.close(r)
            res = _result(data, status, killed, cfg)
            res.update(op="result", id=job["id"], duration_s=time.monotonic() - t0)
            for d in dirty:
                _clean(d)
            if killed == "caller":
                break
            write_frame(out, res)
    finally:
        if ids is None:
            shutil.rmtree(info["base"], ignore_errors=True)


if __name__ == "__main__":
    main()
