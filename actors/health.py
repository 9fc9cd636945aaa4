"""What a server reports when its engine fails, so the driver can end the run with the engine's
own error instead of retrying problems against a dead engine."""

from __future__ import annotations

import os
import time


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

        self.procs = [[p, _name(p, "python")] for p in psutil.Process().children(recursive=True)]
        self.first_gone: float | None = None

    def dead(self, settle_s: float = 1.0) -> str | None:
        """Which processes died, once ``settle_s`` has passed since the first was seen dead: one
        killed process takes its siblings down within a moment, and one releasing gigabytes of
        cache is not yet reported dead while a smaller one already is."""
        gone = self._gone()
        if not gone:
            return None
        now = time.monotonic()
        self.first_gone = self.first_gone or now
        if now - self.first_gone < settle_s:
            return None
        return f"engine processes died: {', '.join(gone)}"

    def _gone(self) -> list[str]:
        import psutil

        gone = []
        for entry in self.procs:
            p = entry[0]
            try:
                alive = p.is_running() and p.status() != psutil.STATUS_ZOMBIE
            except psutil.NoSuchProcess:
                alive = False
            # vLLM renames its processes after they start (``VLLM::EngineCore``): keep the most
            # telling name seen, since a reaped process has none and an unreaped one only the
            # kernel's 15 characters of it.
            entry[1] = _name(p, entry[1])
            if not alive:
                gone.append(f"{entry[1]} (pid {p.pid})")
        return gone


def _name(p, known: str) -> str:
    """``p``'s title, or ``known`` if ``p`` has none now or only a generic or truncated one."""
    import psutil

    try:
        name = p.name()
    except psutil.Error:   # gone, or not ours to read
        return known
    generic = name.startswith("python") or not name
    if generic or (len(name) == 15 and known.startswith(name)):
        return known
    return name


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
