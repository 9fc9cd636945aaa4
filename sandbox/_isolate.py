"""Full isolation for a sandbox worker: private network and mount namespaces, private tmpfs
mounts, and the import path bound back for user `nobody` (see sandbox/__init__.py).

Stdlib only, loaded by path from _worker.py (which never imports the sandbox package).
"""
import ctypes
import os

_LIBC = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNS, CLONE_NEWNET = 0x00020000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = (
    1, 2, 4, 32, 4096, 16384, 1 << 18)
# Private tmpfs mounts in full mode: these are the world-writable places on a
# typical host, so covering them leaves `nobody` no shared writable directory.
TMPFS = (("/tmp", "64m"), ("/var/tmp", "16m"), ("/dev/shm", "16m"), ("/run/lock", "1m"))


def _check(rc, what):
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def enter_namespaces(paths):
    """Private net + mount namespace for this worker and its jobs (full mode).

    Returns the import directories bound back over the private mounts: every entry of the
    private tmp dirs that leads to one must survive the per-job cleaning.
    """
    keep = _outermost(paths)
    closed = _closed_ancestors(keep)
    _check(_LIBC.unshare(CLONE_NEWNS | CLONE_NEWNET), "unshare")
    # Without MS_PRIVATE the mounts below could propagate to the host.
    _check(_LIBC.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "make / private")
    # Opened before the tmpfs mounts, which hide a venv or checkout under /tmp, and after
    # unshare: a bind source must be a mount of this namespace.
    fds = {p: os.open(p, os.O_PATH | os.O_DIRECTORY) for p in keep}
    covered = []
    for path, size in TMPFS:
        if os.path.isdir(path) and not os.path.islink(path):
            opts = f"size={size},nr_inodes=16384,mode=1777".encode()
            _check(_LIBC.mount(b"tmpfs", path.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, opts),
                   f"mount tmpfs on {path}")
            covered.append(path)
    # A directory closed to others on the way to Python (/root at 0700 holding ~/.pyenv, a
    # home dir at 0750): cover it with a 0755 tmpfs, which also hides the rest of it from jobs.
    for anc in closed:
        if not under(anc, covered):
            _check(_LIBC.mount(b"tmpfs", anc.encode(), b"tmpfs", MS_NOSUID | MS_NODEV,
                               b"size=1m,mode=0755"), f"mount tmpfs on {anc}")
            covered.append(anc)
    bound = []
    for p, fd in fds.items():
        if under(p, covered):   # hidden now: bind it back at its own path, read-only
            _makedirs_0755(p)
            src = f"/proc/self/fd/{fd}".encode()
            _check(_LIBC.mount(src, p.encode(), None, MS_BIND | MS_REC, None), f"bind {p}")
            _check(_LIBC.mount(None, p.encode(), None, MS_REMOUNT | MS_BIND | MS_RDONLY, None),
                   f"make {p} read-only")
            bound.append(p)
        os.close(fd)
    return bound


def _outermost(paths):
    """The paths that are not inside another one (binding those covers the rest)."""
    out = []
    for p in sorted(set(paths)):
        if not any(under(p, [q]) for q in out):
            out.append(p)
    return out


def under(path, dirs):
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in dirs)


def _closed_ancestors(paths):
    """For each path, its outermost ancestor that others cannot enter (mode without o+x)."""
    found = set()
    for p in paths:
        parts = p.strip("/").split("/")
        for i in range(1, len(parts)):
            anc = "/" + "/".join(parts[:i])
            if not os.stat(anc).st_mode & 0o001:
                found.add(anc)
                break
    return sorted(found)


def _makedirs_0755(path):
    # Mount points inside the private tmpfs: owned by root, so `nobody` can pass through them
    # but neither write nor remove them (the tmpfs root is sticky).
    cur = ""
    for part in path.strip("/").split("/"):
        cur += "/" + part
        if not os.path.isdir(cur):
            os.mkdir(cur)
            os.chmod(cur, 0o755)


def probe(paths, ids):
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


def full_trial(paths, ids):
    """Enter full isolation in a throwaway child; None if it works, else why not."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            try:
                enter_namespaces(paths)
                bad = probe(paths, ids)
                why = f"user {ids[0]} cannot read {bad}" if bad else ""
            except BaseException as e:
                why = str(e) or type(e).__name__
            os.write(w, why.encode("utf-8", "backslashreplace")[:4096])
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        why = f.read().decode()
    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    return why or (None if code == 0 else f"trial exited with {code}")
