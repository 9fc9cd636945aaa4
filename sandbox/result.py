"""ExecResult: the outcome of one sandboxed job (plain data, safe to pickle/send over Ray)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ExecResult:
    """What one job did.

    ok         -- the code ran to the end (or called sys.exit()/sys.exit(0)).
    stdout     -- captured print output; head + tail of at most `output_limit`
                  bytes with "\\n...[N bytes truncated]...\\n" between if cut.
    error      -- None if ok, else "<Type>: <message>", e.g.
                  "ZeroDivisionError: division by zero", "Timeout: exceeded 5.0s",
                  "Crashed: killed by signal SIGSEGV", "SandboxError: worker died ...".
    timed_out  -- wall-clock (or CPU) limit hit.
    duration_s -- wall time from fork to reap, as measured by the worker.
    truncated  -- stdout was cut.
    stderr     -- captured stderr incl. the traceback (head+tail, 4 KB), for debugging.
    """

    ok: bool
    stdout: str = ""
    error: str | None = None
    timed_out: bool = False
    duration_s: float = 0.0
    truncated: bool = False
    stderr: str = ""

    @classmethod
    def failure(cls, error: str, duration_s: float = 0.0) -> "ExecResult":
        return cls(ok=False, error=error, duration_s=duration_s)

    @property
    def error_type(self) -> str | None:
        """'ZeroDivisionError', 'Timeout', 'Crashed', 'SandboxError', ... or None."""
        return None if self.error is None else self.error.split(":", 1)[0]
