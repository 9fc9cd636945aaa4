"""Benchmark (b): asynchronous tree scheduling vs the reference code's depth-lockstep.

The engine is the scripted teacher behind a latency model of a GPU's batched cost — every
generate call takes ``a + b * tokens`` seconds (``--a``, ``--b``) — so the result is about
scheduling, not about the teacher. The same problems, search settings and sandbox are used by:

* lockstep (the reference code): every tree advances one step per generate call, then all
  programs run while the engine waits; a tree that finished its rollout waits for the others
  before the next rollout starts;
* async (ours, as in ``SearchWorker``): every tree is its own coroutine; engine calls take
  whatever requests are pending (``actors.batcher.Batcher``) while other trees' programs run in
  the sandbox, so the engine never waits for code and no tree waits for a straggler.

Prints wall times and the speedup (goal >= 2x). Usage: python benchmarks/async_vs_lockstep.py
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from actors.batcher import Batcher, in_thread  # noqa: E402
from rstar.domains import verifier_for  # noqa: E402
from rstar.domains.arith import generate  # noqa: E402
from rstar.domains.teacher import ScriptedTeacher  # noqa: E402
from sandbox import Sandbox  # noqa: E402
from tree.driver import drive_async  # noqa: E402
from tree.mcts import Execute, MCTSConfig, Propose, TreeSearch  # noqa: E402


class LatencyTeacher:
    """The scripted teacher, made to cost what a batched GPU call costs: a + b * tokens."""

    def __init__(self, a: float, b: float, error_rate: float) -> None:
        self.teacher = ScriptedTeacher(error_rate=error_rate)
        self.a, self.b = a, b
        self.calls = self.busy = 0.0

    def propose(self, requests):
        out = self.teacher.propose(requests)
        tokens = sum(len(t) // 4 for cands in out for t in cands)  # ~4 characters a token
        cost = self.a + self.b * tokens
        time.sleep(cost)
        self.calls += 1
        self.busy += cost
        return out


class HeavySandbox:
    """Programs that also burn ``ms`` of CPU, like MATH code that calls sympy."""

    def __init__(self, sandbox, ms: float) -> None:
        self.sandbox = sandbox
        self.pad = (f"\nimport time as _t\n_s = _t.perf_counter()\n"
                    f"while _t.perf_counter() - _s < {ms / 1000}: pass\n") if ms > 0 else ""

    def run_many(self, programs):
        return self.sandbox.run_many([p + self.pad for p in programs])

    def submit(self, program):
        return self.sandbox.submit(program + self.pad)


def searches(problems, cfg):
    v = verifier_for("arith")
    return [TreeSearch(p.id, p.question, p.answer, v, cfg) for p in problems]


def run_lockstep(problems, cfg, engine, sandbox) -> float:
    t0 = time.perf_counter()
    active = []
    for s in searches(problems, cfg):
        gen = s.run()
        active.append([s, gen, next(gen)])
    target = 1
    while active:
        # One generate call for every tree that is still inside rollout `target`.
        movers = [a for a in active if a[0].stats.rollouts < target]
        if not movers:
            target += 1
            continue
        props = [a for a in movers if isinstance(a[2], Propose)]
        answers = {}
        if props:
            for a, out in zip(props, engine.propose([a[2].request for a in props])):
                answers[id(a)] = out
        execs = [a for a in movers if isinstance(a[2], Execute)]
        if execs:  # the engine idles while code runs
            flat = [p for a in execs for p in a[2].programs]
            res = sandbox.run_many(flat)
            k = 0
            for a in execs:
                answers[id(a)], k = res[k : k + len(a[2].programs)], k + len(a[2].programs)
        for a in movers:
            try:
                a[2] = a[1].send(answers[id(a)])
            except StopIteration:
                active.remove(a)
    return time.perf_counter() - t0


def run_async(problems, cfg, engine, sandbox) -> float:
    async def main():
        propose_b = Batcher(in_thread(engine.propose), max_items=10_000, max_inflight=1)

        async def propose(req):
            return (await propose_b.submit([req]))[0]

        async def execute(programs):
            return await asyncio.gather(*[asyncio.wrap_future(sandbox.submit(p))
                                          for p in programs])

        await asyncio.gather(*[drive_async(s, propose, execute) for s in searches(problems, cfg)])

    t0 = time.perf_counter()
    asyncio.run(main())
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--problems", type=int, default=64)
    ap.add_argument("--rollouts", type=int, default=8)
    ap.add_argument("--candidates", type=int, default=4)
    ap.add_argument("--a", type=float, default=0.05, help="seconds per engine call")
    ap.add_argument("--b", type=float, default=2e-5, help="seconds per generated token")
    ap.add_argument("--error-rate", type=float, default=0.15)
    ap.add_argument("--exec-ms", type=float, default=0.0,
                    help="extra CPU time per program (models heavier, e.g. sympy, code)")
    args = ap.parse_args()
    problems = generate(args.problems, 1)
    cfg = MCTSConfig(rollouts=args.rollouts, candidates=args.candidates)
    with Sandbox(workers=2) as raw:
        raw.run_many(["pass"] * 4)  # warm the workers
        sandbox = HeavySandbox(raw, args.exec_ms)
        e1 = LatencyTeacher(args.a, args.b, args.error_rate)
        t_lock = run_lockstep(problems, cfg, e1, sandbox)
        e2 = LatencyTeacher(args.a, args.b, args.error_rate)
        t_async = run_async(problems, cfg, e2, sandbox)
    print(f"engine model: {args.a * 1000:.0f} ms + {args.b * 1e6:.0f} us/token per call; "
          f"{args.problems} problems, {args.rollouts} rollouts, {args.candidates} candidates; "
          f"+{args.exec_ms:.0f} ms CPU per program")
    print(f"lockstep: {t_lock:6.2f} s  ({e1.calls:.0f} engine calls, engine busy "
          f"{e1.busy / t_lock:.0%})")
    print(f"async:    {t_async:6.2f} s  ({e2.calls:.0f} engine calls, engine busy "
          f"{e2.busy / t_async:.0%})")
    print(f"speedup async/lockstep: {t_lock / t_async:.2f}x  (goal >= 2x)")


if __name__ == "__main__":
    main()
