"""Training progress on the driver's terminal.

``rstar`` starts Ray with ``log_to_driver=False`` (the engine and sandbox actors would flood the
terminal), so the train workers' own progress lines only reach Ray Train's log files and the
dashboard. Rank 0 therefore also sends its step count to a small actor (``tell``, fire and
forget) that a thread on the driver polls to draw a bar (``Watcher``). The same channel carries
each optimizer step's scalars (loss, lr, throughput) to the driver's experiment tracker
(``rstar.tracking``): the board queues them until the driver drains it."""

from __future__ import annotations

from typing import Any


class ProgressBoard:
    """Ray actor holding a training job's latest progress (rank 0 writes, the driver reads)."""

    def __init__(self) -> None:
        self.state: dict = {}
        self.queued: list[tuple[int, dict]] = []

    def put(self, state: dict, scalars: dict | None = None) -> None:
        self.state = state
        if scalars is not None:
            self.queued.append((int(state.get("step", 0)), scalars))

    def get(self, since: int = 0) -> tuple[dict, list[tuple[int, dict]]]:
        """The latest state, and the step scalars queued after the first ``since`` (the driver
        counts what it received, so a poll lost to a timeout loses nothing)."""
        return self.state, self.queued[since:]


def tell(config: dict, scalars: dict | None = None, **state: Any) -> None:
    """Send progress (``step``, ``total``, anything shown after them) to the job's board, if the
    driver asked for one; fire-and-forget, so the training loop never waits on it.
    ``scalars``: this step's numbers for the tracker (sent only when the driver tracks)."""
    board = config.get("progress")
    if board is not None:
        board.put.remote(state, scalars if config.get("track_steps") else None)


class Watcher:
    """Driver side: a thread polls the board, draws a tqdm bar (``bar``) and hands queued step
    scalars to ``on_step(step, scalars)``, until ``stop``."""

    def __init__(self, name: str, every_s: float = 1.0, bar: bool = True,
                 on_step=None) -> None:
        import threading

        import ray

        self.board = ray.remote(num_cpus=0)(ProgressBoard).remote()
        self.name, self.every_s, self.bar, self.on_step = name, every_s, bar, on_step
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        import ray

        self.done.set()
        self.thread.join()
        ray.kill(self.board)

    def _run(self) -> None:
        import ray
        from tqdm import tqdm

        received = 0
        with tqdm(desc=self.name, unit="step", total=None, disable=not self.bar) as bar:
            while True:
                last = self.done.wait(self.every_s)
                try:
                    state, queued = ray.get(self.board.get.remote(received), timeout=10)
                    state = dict(state)
                except Exception:  # a slow poll only delays the bar and the tracker
                    state, queued = {}, []
                received += len(queued)
                if self.on_step is not None:
                    for step, scalars in queued:
                        self.on_step(step, scalars)
                if "total" in state:
                    bar.total = state.pop("total")
                if "step" in state:
                    bar.n = state.pop("step")
                if state:
                    bar.set_postfix(state, refresh=False)
                bar.refresh()
                if last:
                    return
