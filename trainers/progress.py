"""Training progress on the driver's terminal.

``rstar`` starts Ray with ``log_to_driver=False`` (the engine and sandbox actors would flood the
terminal), so the train workers' own progress lines only reach Ray Train's log files and the
dashboard. Rank 0 therefore also sends its step count to a small actor (``tell``, fire and
forget) that a thread on the driver polls to draw a bar (``Watcher``)."""

from __future__ import annotations

from typing import Any


class ProgressBoard:
    """Ray actor holding a training job's latest progress (rank 0 writes, the driver reads)."""

    def __init__(self) -> None:
        self.state: dict = {}

    def put(self, state: dict) -> None:
        self.state = state

    def get(self) -> dict:
        return self.state


def tell(config: dict, **state: Any) -> None:
    """Send progress (``step``, ``total``, anything shown after them) to the job's board, if the
    driver asked for one; fire-and-forget, so the training loop never waits on it."""
    board = config.get("progress")
    if board is not None:
        board.put.remote(state)


class Watcher:
    """Driver side: a thread polls the board and draws a tqdm bar until ``stop``."""

    def __init__(self, name: str, every_s: float = 1.0) -> None:
        import threading

        import ray

        self.board = ray.remote(num_cpus=0)(ProgressBoard).remote()
        self.name, self.every_s = name, every_s
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

        with tqdm(desc=self.name, unit="step", total=None) as bar:
            while True:
                last = self.done.wait(self.every_s)
                try:
                    state = dict(ray.get(self.board.get.remote(), timeout=10))
                except Exception:  # a slow poll only delays the bar
                    state = {}
                if "total" in state:
                    bar.total = state.pop("total")
                if "step" in state:
                    bar.n = state.pop("step")
                if state:
                    bar.set_postfix(state, refresh=False)
                bar.refresh()
                if last:
                    return
