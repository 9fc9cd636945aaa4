"""Sandboxed execution of model-written Python (stdlib only; never imports ray or torch).

    from sandbox import Sandbox, ExecResult
    with Sandbox(timeout_s=5.0, memory_mb=512, workers=2) as sb:
        r = sb.run("x = 3*7\\nprint(x)")        # ExecResult(ok=True, stdout='21\\n', ...)
        rs = sb.run_many([code1, code2])        # same order, spread over the workers
        fut = sb.submit(code)                   # concurrent.futures.Future[ExecResult]

Design
------
The caller never runs job code. `workers` long-lived processes (`_worker.py`,
started by path with `python -s -P` and a fixed minimal environment) talk to
the caller over length-prefixed JSON frames. For every job the warm worker
fork()s a child, so no module/global state survives from one job to the next.
The child makes itself a session leader, sets rlimits (address space = its
current size + memory_mb, CPU = ceil(timeout)+1 s, no processes, 16 MB files,
no core files, 256 fds), chdirs into a fresh job directory, captures
stdout/stderr in memory (head+tail, bounded), points fds 0/1/2 at /dev/null,
installs an audit hook and exec()s the code in a fresh `__main__` module.

Results and their semantics
---------------------------
* Normal end, or SystemExit with code None/0 (sys.exit(), exit()): ok=True.
* Uncaught exception: ok=False, error="<Type>: <message>" (SystemExit with any
  other code: "SystemExit: <code>"); the traceback is in `stderr`.
* Wall-clock limit: SIGALRM at timeout_s raises inside the job (so partial
  stdout is kept); if the job ignores it, SIGKILL of its process group at
  timeout_s + 0.5 s. Either way timed_out=True, error="Timeout: exceeded Ns".
* Killed by a signal (segfault from runaway C recursion, ...): ok=False,
  error="Crashed: killed by signal SIGSEGV".
* Process ended without reporting (os._exit(n), even n=0): ok=False,
  error="Crashed: exited with status n without finishing".
* Worker death/wedge (never caused by normal job behaviour): ok=False,
  error="SandboxError: worker died (...)"; the worker is replaced. The caller
  never raises because of what a job does and never waits longer than
  timeout_s + 5 s for one job.
Workers are also replaced (cheap insurance) after a timeout, MemoryError,
crash, or `max_jobs_per_worker` jobs, before that job's result is delivered.
close() fails queued jobs with a SandboxError result, lets running ones end
(bounded by timeout_s), and stops every worker and job process; if the caller
itself dies, workers and jobs die with it (PR_SET_PDEATHSIG).

Cost: ~3 ms per trivial job on this 2-core VM (fork + limits + hook + exec +
exit), vs ~30 ms for a fresh `python -I -c`; see benchmarks/sandbox_throughput.py.
Modules not in `preload` are imported per job (sympy: ~0.8 s!), so callers
running sympy-heavy code should add "sympy" to `preload` (fork then ~6 ms).

Isolation levels (`isolation=`)
-------------------------------
"full" (what "auto" picks when running as root and namespaces work):
  Each worker unshare()s a new network + mount namespace once at startup (a
  few ms in total, see stats()["namespace_setup_ms"]), makes all mounts
  private, and mounts fresh size-limited tmpfs on /tmp, /var/tmp, /dev/shm
  and /run/lock (so nothing written there reaches the host, and it is wiped
  after every job). Directories that hold Python but are closed to others
  (e.g. /root at 0700 with /root/.pyenv inside) are covered by a 0755 tmpfs,
  which hides the rest of them from jobs. Every import directory (stdlib,
  site-packages, an editable checkout) that a private mount now hides - a
  venv under /tmp, say - is bind-mounted back read-only at its own path, so
  jobs import what the caller can wherever it is installed. A probe then
  checks that `nobody` can list every import directory. If anything fails,
  "full" raises; "auto" falls back to basic (having tried full in a
  throwaway child, so the worker is untouched) and says why in
  stats()["isolation_fallback"] and a warning. Each job drops
  to uid/gid `nobody` (no supplementary groups) before running, with the
  audit hook below on top. Kernel-enforced guarantees:
  - no network at all (empty netns: only a downed loopback);
  - no writes outside the job dir and the private tmpfs mounts, other than to
    files that are world-writable on the host (ordinary Unix permissions);
  - cannot signal, ptrace or otherwise touch the worker, the caller or any
    root/other-user process; cannot fork or start threads (RLIMIT_NPROC=0
    applies to non-root; threading.Thread.start() raises RuntimeError), so
    the process group kill always gets everything;
  - memory/CPU/file-size limits; dies with its worker (PDEATHSIG).
  Not guaranteed: the job can *read* anything world-readable (and see
  /proc); concurrently running jobs of different workers share the uid
  `nobody`, so a job that first defeats the audit hook could signal another
  running job (which is then reported as crashed); no seccomp filter, so the
  whole kernel syscall surface is reachable; not a defence against kernel
  exploits. It is a strong containment for buggy or mildly adversarial model
  output, not a hardened multi-tenant jail.

"basic" (non-root callers, or isolation="basic"): no namespaces, no uid change.
  Guarantees: fork-per-job state isolation, rlimits (NPROC binds only
  non-root users, who then cannot start threads either), wall/CPU timeouts,
  bounded output, the job's process group is killed after every job, and the
  caller survives anything the job does (a killed worker is replaced).
  The audit hook denies sockets, subprocess/os.system/exec/spawn/fork,
  os.kill/killpg, ctypes, rlimit changes, gc object walks and file writes or
  deletions outside the job dir. Audit hooks are NOT a security boundary: a
  determined job can get around them (e.g. signal.pidfd_send_signal is not
  audited, and pure-Python helpers the hook relies on can be monkeypatched),
  and it then runs with the caller's uid, network and filesystem access. Use
  basic mode only for trusted or merely buggy code.

Both levels: a seccomp filter refuses jobs new signal handlers (signal.signal raises OSError),
so a job can neither dodge the soft timeout nor be handed the interrupted frame; and a job may
raise the audit event "sandbox.lock_introspection" (one way), after which frames
(sys._getframe answers "no frames here", traceback/generator frames and code objects),
trace/profile hooks and /proc/*/mem are refused: the code domain's test harness does so before
running a candidate, whose tests and verdict live in the harness's frames.

Both levels: jobs see a fixed environment (no caller secrets), PYTHONHASHSEED=0
(same output in every worker; this is why workers run as `python -s -P` with an
explicit env instead of `-I`, which would ignore PYTHONHASHSEED), cwd and
HOME/TMPDIR = a fresh, emptied-after-use job directory.
"""
from .pool import DEFAULT_PRELOAD, Sandbox
from .result import ExecResult

__all__ = ["Sandbox", "ExecResult", "DEFAULT_PRELOAD"]
