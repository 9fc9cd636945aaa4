"""What a server reports when its engine fails, so the driver can end the run with the engine's
own error instead of retrying problems against a dead engine."""

from __future__ import annotations

import os


def describe_failure(e: BaseException, tail_bytes: int = 65536) -> str:
    """``Type: message``, plus the error lines this process's stderr got last. vLLM's engine core
    runs in a child process that logs the root cause there (a Ray actor's stderr is its
    ``worker-*.err`` file) and raises only ``EngineDeadError: ... see stack trace above`` here."""
    text = f"{type(e).__name__}: {e}"
    try:
        path = os.readlink("/proc/self/fd/2")
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - tail_bytes))
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:   # a terminal or a pipe: nothing to read back
        return text
    causes = [ln.strip() for ln in lines if ("Error" in ln or "Exception" in ln)
              and "Traceback" not in ln]
    seen, picked = set(), []
    for ln in reversed(causes):
        key = ln.split("] ", 1)[-1]   # vLLM prefixes a timestamp and a source location
        if key not in seen and key not in text:
            seen.add(key)
            picked.append(key)
        if len(picked) == 3:
            break
    return text + "".join(f"\n  cause: {c}" for c in reversed(picked))


class EngineProcesses:
    """The processes an engine started beside this one (vLLM's engine core and its workers),
    recorded once it is up. One that dies leaves a blocking ``LLM.generate`` waiting forever
    rather than raising, so the server's ``health()`` asks here."""

    def __init__(self) -> None:
        import psutil

        self.procs = [[p, p.name()] for p in psutil.Process().children(recursive=True)]

    def dead(self) -> str | None:
        import psutil

        gone = []
        for entry in self.procs:
            p = entry[0]
            try:
                if not p.is_running() or p.status() == psutil.STATUS_ZOMBIE:
                    gone.append(f"{entry[1]} (pid {p.pid})")
                else:  # vLLM renames its processes after they start: keep the latest name
                    entry[1] = p.name()
            except psutil.NoSuchProcess:
                gone.append(f"{entry[1]} (pid {p.pid})")
        return f"engine processes died: {', '.join(gone)}" if gone else None


class EngineFailure(RuntimeError):
    """A server's engine could not start or died: the run ends on it (exit status 1)."""


def creation_error(e: BaseException) -> str:
    """The last exception line of an actor's creation traceback (what ``__init__`` raised) and
    the cause lines ``describe_failure`` attached to it, without Ray's preamble."""
    lines = str(e).splitlines()
    for i in range(len(lines) - 1, -1, -1):
        head = lines[i].split(": ", 1)[0]
        if head and " " not in head and head.endswith(("Error", "Exception", "Failure")):
            return "\n".join(lines[i:]).strip()
    return str(e).strip()
