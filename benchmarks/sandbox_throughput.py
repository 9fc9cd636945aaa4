"""Sandbox throughput: warm fork-per-job workers vs one `python -I -c` subprocess per job.

    /work/venv/bin/python benchmarks/sandbox_throughput.py [--jobs 300]

Prints ms/job and jobs/s for a trivial snippet and a ~10-line arithmetic
program, with 1 and 2 workers, full and basic isolation, and the speedup over
spawning a fresh interpreter per job at the same parallelism. All figures come
from this one run; no numbers are asserted anywhere.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sandbox import Sandbox  # noqa: E402

TRIVIAL = "print(2 + 2)"
ARITH = """\
from fractions import Fraction
import math
total = Fraction(0)
for k in range(1, 40):
    total += Fraction(1, k * (k + 1))
primes = [n for n in range(2, 300) if all(n % d for d in range(2, math.isqrt(n) + 1))]
digits = sum(int(c) for c in str(math.factorial(60)))
gcds = sum(math.gcd(a, b) for a in range(1, 30) for b in range(1, 30))
print(total, len(primes), digits, gcds)
"""


def time_sandbox(sb: Sandbox, code: str, n: int) -> float:
    sb.run_many([code] * 10)                       # warm both workers and the page cache
    t0 = time.perf_counter()
    rs = sb.run_many([code] * n)
    dt = time.perf_counter() - t0
    assert all(r.ok for r in rs), next(r for r in rs if not r.ok)
    return dt / n


def time_subprocess(code: str, n: int, parallel: int) -> float:
    def one(_):
        out = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, timeout=30)
        assert out.returncode == 0, out.stderr
    with ThreadPoolExecutor(parallel) as ex:
        list(ex.map(one, range(4)))
        t0 = time.perf_counter()
        list(ex.map(one, range(n)))
        return (time.perf_counter() - t0) / n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=300)
    args = ap.parse_args()
    n, n_sub = args.jobs, max(40, args.jobs // 3)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, euid {os.geteuid()}, "
          f"loadavg before {os.getloadavg()[0]:.2f}; "
          f"{n} jobs per sandbox row, {n_sub} per subprocess row")

    baseline = {(name, w): time_subprocess(code, n_sub, w)
                for name, code in (("trivial", TRIVIAL), ("arith", ARITH)) for w in (1, 2)}
    isolations = ["full", "basic"] if os.geteuid() == 0 else ["basic"]
    print(f"\n{'snippet':8} {'isolation':9} {'workers':>7} {'ms/job':>8} {'jobs/s':>8} "
          f"{'subproc ms/job':>15} {'speedup':>8}")
    for iso in isolations:
        for workers in (1, 2):
            with Sandbox(timeout_s=10, workers=workers, isolation=iso) as sb:
                for name, code in (("trivial", TRIVIAL), ("arith", ARITH)):
                    per = time_sandbox(sb, code, n)
                    base = baseline[name, workers]
                    print(f"{name:8} {iso:9} {workers:>7} {per * 1e3:8.2f} {1 / per:8.0f} "
                          f"{base * 1e3:15.2f} {base / per:7.1f}x")
                st = sb.stats()
            starts = st["worker_starts"]
            ns = (f" (of which unshare+mounts+probe {st['namespace_setup_ms'] / starts:.1f} ms)"
                  if iso == "full" else "")
            print(f"{'':8} {iso:9} {workers:>7}   worker start: "
                  f"{st['worker_start_s'] / starts * 1e3:.0f} ms each{ns}")

    # A heavier warm heap makes each fork dearer (page tables to copy): sympy preloaded.
    with Sandbox(timeout_s=10, workers=1, preload=("math", "fractions", "sympy")) as sb:
        per = time_sandbox(sb, TRIVIAL, n // 2)
        base = time_subprocess("import sympy; print(2 + 2)", max(10, n_sub // 4), 1)
        print(f"\nsympy preloaded, {sb.stats()['isolation']}, 1 worker: {per * 1e3:.2f} ms/job; "
              f"`python -I -c 'import sympy; ...'`: {base * 1e3:.0f} ms/job ({base / per:.0f}x)")
    print(f"loadavg after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
