"""`rstar search` end to end: real teacher, real sandbox, a real Parquet file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

from tree.rows import COLUMNS, from_rows


def test_rstar_search_end_to_end(tmp_path):
    out = tmp_path / "trees.parquet"
    exe = Path(sys.executable).parent / "rstar"
    proc = subprocess.run(
        [str(exe), "search", "--problems", "12", "--rollouts", "6", "--candidates", "3",
         "--seed", "5", "--out", str(out), "--quiet"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["problems"] == 12 and summary["rows"] > 12
    assert 0 <= summary["single_sample_solved"] <= summary["search_solved"] <= 1
    assert summary["executions"] > 0 and summary["dead_nodes"] >= 0
    assert "solved by search" in proc.stdout
    table = pq.read_table(out)
    assert table.num_rows == summary["rows"]
    assert list(table.schema.names) == [*COLUMNS, "round"]
    trees = from_rows(table.to_pylist())
    assert len(trees) == 12
    assert sum(t.solved() for t in trees) / 12 == summary["search_solved"]


def test_bad_config_names_the_key(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("mcts:\n  rollout: 3\n")
    exe = Path(sys.executable).parent / "rstar"
    proc = subprocess.run([str(exe), "search", "--config", str(cfg), "--out",
                           str(tmp_path / "x.parquet")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "mcts.rollout" in proc.stderr and str(cfg) in proc.stderr
    cfg.write_text("mcts:\n  rollouts: many\n")
    proc = subprocess.run([str(exe), "search", "--config", str(cfg)], capture_output=True,
                          text=True)
    assert proc.returncode == 2 and "mcts.rollouts" in proc.stderr


def test_a_sandbox_fallback_is_said_once_recorded_and_refused_on_request(tmp_path):
    """An interpreter with an import directory `nobody` cannot read: "auto" falls back to basic
    and says so at start and in the summary; ``sandbox.isolation: full`` refuses to run."""
    import os

    import pytest

    from test_sandbox_isolation import _venv

    if os.geteuid() != 0:
        pytest.skip("full isolation needs root")
    py = str(_venv(tmp_path, unreadable=True) / "bin" / "python")
    cmd = [py, "-m", "rstar.cli", "search", "--problems", "3", "--rollouts", "2", "--quiet",
           "--out", str(tmp_path / "t.parquet")]
    from test_sandbox_isolation import REPO

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    said = [line for line in proc.stderr.splitlines() if "isolation instead of full" in line]
    assert len(said) == 1 and f"cannot read {tmp_path}/closed" in said[0], proc.stderr
    assert "sandbox.isolation: full" in said[0]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["sandbox_isolation"] == "basic"
    assert summary["sandbox_fallback"] == f"user 65534 cannot read {tmp_path}/closed"
    cfg = tmp_path / "full.yaml"
    cfg.write_text("sandbox:\n  isolation: full\n")
    proc = subprocess.run(cmd + ["--config", str(cfg)], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path, env=env)
    assert proc.returncode == 2 and not (tmp_path / "t2.parquet").exists()
    assert "sandbox.isolation is 'full'" in proc.stderr and "closed" in proc.stderr, proc.stderr
