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
