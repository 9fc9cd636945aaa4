"""Experiment tracking: scalars to TensorBoard event files and/or a Weights & Biases run.

``rstar evolve`` logs every training job's per-step loss, learning rate and throughput (sent by
the Ray Train workers' rank 0 through the job's progress board, ``trainers.progress``) and every
round's metrics (accuracies, intervals, per-difficulty, phase times). Both sinks are optional
and off by default; the tag layout is the same in both:

- ``round-<r>/policy/{loss,lr,tokens_per_s}`` and ``round-<r>/ppm/{loss,lr,texts_per_s}``,
  at the job's optimizer step;
- ``round/<metric>`` (nested ones flattened: ``round/policy_greedy_by_difficulty/5``), at step r.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class WandbConfig:
    """A Weights & Biases run for the whole command."""

    project: str = ""
    """W&B project; empty: no W&B run."""
    mode: Literal["online", "offline", "disabled"] = "offline"
    """"offline" writes the run under ``dir`` with no network (``wandb sync`` uploads it later),
    the safe default on clusters without outbound access; "online" streams it."""
    dir: str = ""
    """Where the ``wandb/`` run folder goes; empty: the run's WORKDIR."""
    entity: str = ""
    """W&B team or user; empty: the logged-in default."""


@dataclass(frozen=True)
class TrackingConfig:
    """Where ``rstar evolve`` logs its scalars (both off by default: nothing to install or
    configure for the embedded run)."""

    tensorboard: str = ""
    """TensorBoard log directory (relative: under WORKDIR); empty: none. Written with
    tensorboardX (``pip install rstar[tracking]``); view with ``tensorboard --logdir``."""
    wandb: WandbConfig = field(default_factory=WandbConfig)
    """Weights & Biases (``pip install rstar[tracking]``); off while ``project`` is empty."""


def flatten(metrics: dict, prefix: str = "") -> dict[str, float]:
    """Numeric leaves of nested dicts and lists as ``a/b/0`` keys (an interval ``[lo, hi]``
    becomes ``.../0`` and ``.../1``); bools count, NaN and text do not."""
    out: dict[str, float] = {}
    for k, v in metrics.items():
        key = f"{prefix}/{k}" if prefix else str(k)
        if isinstance(v, (list, tuple)):
            v = dict(enumerate(v))
        if isinstance(v, dict):
            out.update(flatten(v, key))
        elif isinstance(v, (bool, int, float)) and not (isinstance(v, float) and math.isnan(v)):
            out[key] = float(v)
    return out


class Tracker:
    """Fans scalars out to the configured sinks; with none configured every call is a no-op."""

    def __init__(self, cfg: TrackingConfig, workdir: str, run_name: str,
                 config: Any = None) -> None:
        from pathlib import Path

        self._tb = self._wb = None
        self._defined: set[str] = set()
        if cfg.tensorboard:
            try:
                from tensorboardX import SummaryWriter
            except ImportError as e:
                raise ImportError("tracking.tensorboard needs tensorboardX: "
                                  "pip install 'rstar[tracking]'") from e
            logdir = Path(cfg.tensorboard)
            self._tb = SummaryWriter(str(logdir if logdir.is_absolute() else Path(workdir) / logdir))
        w = cfg.wandb
        if w.project and w.mode != "disabled":
            try:
                import wandb
            except ImportError as e:
                raise ImportError("tracking.wandb needs wandb: pip install 'rstar[tracking]'") from e
            self._wb = wandb.init(project=w.project, entity=w.entity or None, mode=w.mode,
                                  dir=w.dir or workdir, name=run_name,
                                  config=asdict(config) if config is not None else None)

    @property
    def enabled(self) -> bool:
        return self._tb is not None or self._wb is not None

    def log(self, scalars: dict, step: int, prefix: str) -> None:
        """Log ``scalars`` (flattened) under ``prefix/`` at ``step``."""
        if not self.enabled:
            return
        flat = flatten(scalars, prefix)
        if self._tb is not None:
            for tag, value in flat.items():
                self._tb.add_scalar(tag, value, step)
        if self._wb is not None:
            # Each prefix gets its own x axis: training steps and rounds never share one.
            axis = f"{prefix}/step"
            if prefix not in self._defined:
                self._wb.define_metric(axis, hidden=True)
                self._wb.define_metric(f"{prefix}/*", step_metric=axis)
                self._defined.add(prefix)
            self._wb.log({axis: step, **flat})

    def step_logger(self, prefix: str):
        """A ``(step, scalars)`` callback for a training job, or None when tracking is off."""
        return (lambda step, scalars: self.log(scalars, step, prefix)) if self.enabled else None

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
        if self._wb is not None:
            self._wb.finish()
        self._tb = self._wb = None
