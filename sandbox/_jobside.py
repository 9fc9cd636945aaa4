"""Job side of the sandbox: runs inside the per-job fork() of a warm worker.

Stdlib only and loaded by path from _worker.py (never via the sandbox
package), so the worker stays a standalone script. Everything here ends in
os._exit: _child() reports one JSON result through its pipe and never returns.
"""
import ctypes
import io
import json
import os
import signal
import sys
import traceback
import types

import resource

PR_SET_PDEATHSIG = 1
STDERR_LIMIT = 4096
LOCK_EVENT = "sandbox.lock_introspection"   # sys.audit(LOCK_EVENT): see _install_audit_hook
_LIBC = ctypes.CDLL(None, use_errno=True)


# seccomp: after the sandbox's own SIGALRM handler is in place, a job may not install signal
# handlers (rt_sigaction fails with EPERM, so signal.signal raises OSError). A handler would let
# a job dodge the soft timeout, and it receives the interrupted frame: a way around the audit
# hook's frame rules (LOCK_EVENT) that the hook cannot see.
_AUDIT_ARCH = {"x86_64": (0xC000003E, 13), "aarch64": (0xC00000B7, 134)}
PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte),
                ("k", ctypes.c_uint)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


def _deny_signal_handlers():
    """Install the seccomp filter above; False where the kernel or the machine says no."""
    arch = _AUDIT_ARCH.get(os.uname().machine)
    if arch is None:
        return False
    ld_abs, jeq, ret = 0x20, 0x15, 0x06   # BPF_LD|BPF_W|BPF_ABS, BPF_JMP|BPF_JEQ|BPF_K, BPF_RET
    allow, eperm = 0x7FFF0000, 0x00050000 | 1
    prog = (_SockFilter * 6)(
        _SockFilter(ld_abs, 0, 0, 4),            # seccomp_data.arch
        _SockFilter(jeq, 0, 3, arch[0]),         # another ABI: allow
        _SockFilter(ld_abs, 0, 0, 0),            # seccomp_data.nr
        _SockFilter(jeq, 0, 1, arch[1]),         # rt_sigaction?
        _SockFilter(ret, 0, 0, eperm),
        _SockFilter(ret, 0, 0, allow))
    fprog = _SockFprog(len(prog), prog)
    if _LIBC.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        return False
    return _LIBC.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) == 0


class _JobTimeout(BaseException):
    """BaseException so a job's `except Exception:` cannot swallow the soft timeout."""


class _Guard:
    busy = 0          # >0 while a capture buffer is mid-update
    pending = False   # alarm arrived while busy: raise once the update is done
    armed = True
    fired = False


class _Capture(io.TextIOBase):
    """Keeps the first and last halves of `limit` bytes written, counting the rest.

    Printing gigabytes therefore costs bounded memory, and the job still sees a
    working sys.stdout. The alarm is deferred while buffers are mid-update so
    the truncation count stays exact even when the timeout lands in print().
    """

    def __init__(self, limit, guard):
        self._hlim, self._tlim = limit - limit // 2, limit // 2
        self._head, self._tail, self.dropped, self._g = bytearray(), bytearray(), 0, guard
        self.buffer = types.SimpleNamespace(
            write=lambda b: self.write(bytes(b).decode("utf-8", "replace")) and len(b),
            flush=lambda: None)

    encoding, errors = "utf-8", "backslashreplace"

    def writable(self):
        return True

    def write(self, s):
        if not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        g = self._g
        g.busy += 1
        try:
            self._add(s)
        finally:
            g.busy -= 1
        if g.pending and not g.busy:
            g.pending = False
            raise _JobTimeout()
        return len(s)

    def _add(self, s):
        # ASCII strings are sliced as-is (len == bytes) so a 100 MB print is
        # never fully encoded; other text is rare and encoded whole.
        data = s if s.isascii() else s.encode("utf-8", "backslashreplace")
        enc = (lambda x: x.encode("ascii")) if isinstance(data, str) else bytes
        n, room = len(data), max(0, self._hlim - len(self._head))
        if room:
            self._head += enc(data[:room])
        if n > room:
            start = max(room, n - self._tlim)
            self._tail += enc(data[start:])
            cut = max(0, len(self._tail) - self._tlim)
            del self._tail[:cut]
            self.dropped += start - room + cut

    def getvalue(self):
        if not self.dropped:
            return (self._head + self._tail).decode("utf-8", "replace")
        return (self._head.decode("utf-8", "replace")
                + f"\n...[{self.dropped} bytes truncated]...\n"
                + self._tail.decode("utf-8", "replace"))


def _describe(e, memory_mb):
    try:
        msg = str(e)
    except BaseException:
        msg = "<unprintable message>"
    if isinstance(e, MemoryError) and not msg:
        msg = f"out of memory (limit {memory_mb} MB)"
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__


def _install_audit_hook(jobdir):
    """Deny process/network/native-code events and writes outside `jobdir`.

    Defence in depth only: pure-Python state the hook relies on (os.path,
    posixpath) can be monkeypatched by the job. Functions are bound as
    defaults now so the obvious `os.path.realpath = ...` does not fool it.
    """
    deny = frozenset({
        "subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn",
        "os.fork", "os.forkpty", "os.kill", "os.killpg", "signal.pthread_kill",
        "resource.setrlimit", "resource.prlimit", "sys.addaudithook",
        # gc walks would let a job find and tamper with this hook's function object.
        "gc.get_objects", "gc.get_referrers", "gc.get_referents"})
    deny_prefix = ("socket.", "ctypes.")
    # event -> ((path arg index, dir_fd arg index or None), ...) for path-mutating events
    checks = {"os.remove": ((0, 1),), "os.rmdir": ((0, 1),), "os.mkdir": ((0, 2),),
              "os.truncate": ((0, None),), "os.chmod": ((0, 2),), "os.chown": ((0, 3),),
              "os.utime": ((0, 3),), "os.setxattr": ((0, None),), "os.removexattr": ((0, None),),
              "shutil.rmtree": ((0, 1),), "os.rename": ((0, 2), (1, 3)), "os.link": ((0, 2), (1, 3)),
              "os.symlink": ((1, 2),), "shutil.move": ((0, None), (1, None)),
              "shutil.copytree": ((1, None),)}
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
    root = os.path.realpath(jobdir)
    # LOCK_EVENT (raised by a job, one way: nothing turns it off) also denies what reaches the
    # caller's frames or memory: a test harness raises it before running a candidate program,
    # so the candidate cannot read the hidden tests or the harness's verdict marker from them.
    locked = [False]
    deny_locked = frozenset({"sys._current_frames", "sys.settrace", "sys.setprofile"})
    frame_attrs = frozenset({"tb_frame", "f_code", "gi_frame", "gi_code", "cr_frame", "cr_code",
                             "ag_frame", "ag_code"})

    def hook(event, args, deny=deny, deny_prefix=deny_prefix, checks=checks, wf=write_flags,
             root=root, prefix=root + os.sep, realpath=os.path.realpath, join=os.path.join,
             split=os.path.split, isabs=os.path.isabs, fsdecode=os.fsdecode, readlink=os.readlink,
             locked=locked, deny_locked=deny_locked, frame_attrs=frame_attrs,
             lock_event=LOCK_EVENT):
        if event == lock_event:
            locked[0] = True
            return
        if locked[0]:
            if event == "sys._getframe":  # what a too-deep stack raises: typing, namedtuple and
                raise ValueError("sandbox: no frames here")  # the like carry on without it
            if event in deny_locked or (event == "object.__getattr__"
                                        and len(args) > 1 and args[1] in frame_attrs):
                raise PermissionError(f"sandbox: {event} is not allowed here")
            if event == "open" and not isinstance(args[0], int):
                p = realpath(fsdecode(args[0]))
                if p.startswith("/proc/") and p.rsplit("/", 1)[-1] == "mem":
                    raise PermissionError("sandbox: reading process memory is not allowed")
        if event == "open":
            path, mode, flags = args
            if isinstance(path, int) or not (flags or 0) & wf:
                return
            p = fsdecode(path)
            # os.open (mode None) may carry an invisible dir_fd: only allow absolute paths.
            if mode is None and not isabs(p):
                raise PermissionError(f"sandbox: os.open for writing needs an absolute path: {p!r}")
            p = realpath(p)
            if p != root and not p.startswith(prefix):
                raise PermissionError(f"sandbox: writing outside the job directory: {path!r}")
            return
        if event in deny or event.startswith(deny_prefix):
            raise PermissionError(f"sandbox: {event} is not allowed")
        if event == "object.__setattr__" and args[0] is hook:
            raise PermissionError("sandbox: the audit hook is read-only")
        spec = checks.get(event)
        for pi, di in spec or ():
            t = args[pi] if len(args) > pi else None
            if t is None or isinstance(t, int):
                continue
            d, name = split(fsdecode(t))
            dfd = args[di] if di is not None and len(args) > di else None
            if isinstance(dfd, int) and dfd >= 0 and not isabs(d):
                d = join(readlink(f"/proc/self/fd/{dfd}"), d)
            # Resolve the parent only: removing a symlink that points outside is harmless.
            p = join(realpath(d or "."), name)
            if p != root and not p.startswith(prefix):
                raise PermissionError(f"sandbox: {event} outside the job directory: {t!r}")

    sys.addaudithook(hook)


def _set_limits(cfg, vm_kb):
    R = resource
    # RLIMIT_AS counts what is already mapped, so add the budget to the current size.
    limits = [(R.RLIMIT_AS, vm_kb * 1024 + cfg["memory_mb"] * 2**20),
              (R.RLIMIT_CPU, int(-(-cfg["timeout_s"] // 1)) + 1),  # backstop behind SIGALRM/SIGKILL
              (R.RLIMIT_FSIZE, 16 * 2**20), (R.RLIMIT_CORE, 0), (R.RLIMIT_NOFILE, 256),
              (R.RLIMIT_NPROC, 0)]   # ignored for root, hence the uid drop in full mode
    for res, val in limits:
        hard = R.getrlimit(res)[1]
        if hard != R.RLIM_INFINITY:
            val = min(val, hard)
        # CPU: soft < hard so SIGXCPU (reported as a timeout) comes before SIGKILL.
        new_hard = val + 1 if res == R.RLIMIT_CPU and (hard == R.RLIM_INFINITY or val < hard) else val
        R.setrlimit(res, (val, new_hard))


def _child(code, wfd, jobdir, cfg, worker_pid, ids):
    """Runs one job in the forked child; always ends in os._exit."""
    _exit, _write, _dumps = os._exit, os.write, json.dumps   # bound before the job can patch them
    fallback = b'{"ok": false, "error": "SandboxError: could not report the result"}'

    def send(obj):
        try:
            data = _dumps(obj).encode()
        except BaseException:
            data = fallback
        while data:
            data = data[_write(wfd, data):]

    try:
        os.setsid()   # own process group: the worker killpg()s the job and anything it spawned
        with open("/proc/self/statm", "rb") as f:   # first field: VmSize in pages (cheaper than status)
            vm_kb = int(f.read().split()[0]) * (os.sysconf("SC_PAGE_SIZE") // 1024)
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):   # os.write(1, ...) must not reach the worker's frame pipe
            os.dup2(null, fd)
        os.closerange(3, wfd)
        os.closerange(wfd + 1, 1 << 16)
        os.chdir(jobdir)
        os.environ.update(HOME=jobdir, TMPDIR=jobdir)
        if ids:
            os.setgroups([])
            os.setgid(ids[1])
            os.setuid(ids[0])
        # Set after setuid (which clears it): the job dies with its worker.
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != worker_pid:
            _exit(1)
        _set_limits(cfg, vm_kb)
        guard = _Guard()
        out, err = _Capture(cfg["output_limit"], guard), _Capture(STDERR_LIMIT, guard)
        sys.stdout, sys.stderr, sys.stdin = out, err, io.StringIO()
        main = types.ModuleType("__main__")
        sys.modules["__main__"], sys.argv = main, ["<job>"]

        def on_alarm(signum, frame):
            if guard.armed:
                guard.fired = True
                if guard.busy:
                    guard.pending = True
                else:
                    raise _JobTimeout()
        signal.signal(signal.SIGALRM, on_alarm)
        _deny_signal_handlers()
        _install_audit_hook(jobdir)
    except BaseException as e:
        send({"ok": False, "error": f"SandboxError: job setup failed: {_describe(e, 0)}"})
        _exit(0)

    error = None
    try:
        try:
            signal.setitimer(signal.ITIMER_REAL, cfg["timeout_s"])
            # Only the interpreter's stack holds the job's source and code object while it
            # runs: a job that walks frames' f_locals finds neither (see LOCK_EVENT).
            box, code = [code], None
            exec(compile(box.pop(), "<job>", "exec"), main.__dict__)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            guard.armed = False
    except _JobTimeout:
        pass
    except SystemExit as e:
        # sys.exit()/exit()/sys.exit(0) is a normal end, as for a script; anything else fails.
        if e.code not in (None, 0):
            error = f"SystemExit: {e.code}"
    except BaseException as e:
        error = _describe(e, cfg["memory_mb"])
        if not isinstance(e, MemoryError):
            try:
                traceback.print_exception(type(e), e, e.__traceback__.tb_next, file=err)
            except BaseException:
                pass
    main.__dict__.clear()   # free the job's data (e.g. after MemoryError) before building the result
    if guard.fired:   # also when the job caught _JobTimeout and carried on to the end
        error = f"Timeout: exceeded {cfg['timeout_s']}s"
    send({"ok": error is None, "stdout": out.getvalue(), "stderr": err.getvalue(),
          "error": error, "timed_out": guard.fired, "truncated": out.dropped > 0})
    _exit(0)
