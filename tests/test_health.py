"""An engine's helper processes dying: reported by the name they gave themselves, all together."""

import multiprocessing as mp
import os
import signal
import time

import pytest


def _titled(title: str, delay_s: float) -> None:
    import setproctitle

    time.sleep(delay_s)   # like vLLM's engine core: renamed a moment after it starts
    setproctitle.setproctitle(title)
    time.sleep(120)


def test_dead_processes_are_named_by_their_title_and_reported_together():
    pytest.importorskip("setproctitle", reason="vLLM's dependency, how it names its processes")
    from actors.health import EngineProcesses

    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_titled, args=(t, 0.5), daemon=True)
             for t in ("VLLM::EngineCore", "VLLM::Worker")]
    for p in procs:
        p.start()
    watch = EngineProcesses()   # recorded before the rename
    try:
        deadline = time.monotonic() + 30
        while "VLLM::Worker" not in [n for _, n in watch.procs] and time.monotonic() < deadline:
            assert watch.dead() is None
            time.sleep(0.1)
        os.kill(procs[0].pid, signal.SIGKILL)
        procs[0].join()       # reaped: the name is only what was seen before
        assert watch.dead(settle_s=0.5) is None   # the first sighting waits for siblings
        os.kill(procs[1].pid, signal.SIGKILL)     # unreaped: a zombie keeps 15 characters
        time.sleep(0.6)
        msg = watch.dead(settle_s=0.5)
        assert msg == (f"engine processes died: VLLM::EngineCore (pid {procs[0].pid}), "
                       f"VLLM::Worker (pid {procs[1].pid})"), msg
    finally:
        for p in procs:
            p.kill()
