"""The sandbox's isolation level, checked once when a command starts, so that a fallback to a
weaker level is said up front (with why and what it means) instead of in a worker's log."""

from __future__ import annotations

import logging
import sys


class IsolationError(RuntimeError):
    """``sandbox.isolation: full`` was asked for and cannot be had here."""


def preflight(sandbox_cfg, where: str = "sandbox.isolation") -> dict:
    """Start one sandbox worker as ``sandbox_cfg`` asks, print a fallback once (stderr), and
    return ``{"sandbox_isolation", "sandbox_fallback"}`` for the command's summary.

    On a cluster this checks the driver's machine; the sandbox actors report their own level
    in the run's summary."""
    from sandbox import Sandbox

    # The sandbox also logs a fallback, once per Sandbox; this command says it once, below.
    logging.getLogger("sandbox").addFilter(_not_fallback)
    try:
        with Sandbox(workers=1, timeout_s=sandbox_cfg.timeout_s, preload=(),
                     isolation=sandbox_cfg.isolation) as sb:
            note, stats = sb.fallback_note(), sb.stats()
    except RuntimeError as e:
        raise IsolationError(f"{where} is {sandbox_cfg.isolation!r}, but the sandbox cannot "
                             f"start that way here: {e}") from None
    if note:
        print(f"rstar: sandbox: {note}. Set {where}: full to make this an error, or basic to "
              "accept it.", file=sys.stderr, flush=True)
    return {"sandbox_isolation": stats["isolation"],
            "sandbox_fallback": stats["isolation_fallback"]}


def _not_fallback(record: logging.LogRecord) -> bool:
    return "isolation instead of full" not in record.getMessage()
