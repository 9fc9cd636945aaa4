"""Distributed generation on a real local Ray cluster: every problem in the shards exactly once,
also when search workers are killed (ray.kill and kill -9), and on reruns."""

from __future__ import annotations

import dataclasses
import os
import signal
import threading
import time

import pytest

ray = pytest.importorskip("ray")

from rstar import shards  # noqa: E402
from rstar.config import GenerateConfig, WorkerConfig  # noqa: E402
from rstar.generate import run_generate  # noqa: E402
from tree.mcts import MCTSConfig  # noqa: E402


@pytest.fixture(scope="module")
def ray_cluster():
    os.environ["RAY_AUTH_MODE"] = "disabled"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def small(problems=40, rollouts=6, **workers) -> GenerateConfig:
    w = dataclasses.replace(WorkerConfig(), flush_s=0.5, **workers)
    return GenerateConfig(problems=problems, mcts=MCTSConfig(rollouts=rollouts, candidates=4),
                          workers=w)


def assert_exactly_once(workdir, n):
    table = shards.read_table(f"{workdir}/shards")
    rows = table.to_pylist()
    keys = [(r["round"], r["problem_id"], r["node_id"]) for r in rows]
    assert len(keys) == len(set(keys)), "duplicate rows"
    ids = {r["problem_id"] for r in rows}
    assert len(ids) == n
    for pid in ids:  # each tree complete: node ids 0..k-1
        nodes = sorted(r["node_id"] for r in rows if r["problem_id"] == pid)
        assert nodes == list(range(len(nodes)))
    return rows


def test_generate_writes_every_problem_once_and_resumes(ray_cluster, tmp_path):
    s = run_generate(small(), tmp_path, show_progress=False)
    assert s["missing"] == 0 and s["in_shards"] == 40 and s["written_now"] == 40
    rows = assert_exactly_once(tmp_path, 40)
    assert {r["round"] for r in rows} == {1}
    assert 0.5 < s["solved_frac"] <= 1.0
    files = shards.shard_files(f"{tmp_path}/shards")
    # A rerun with more problems only searches the new ones.
    s2 = run_generate(small(problems=50), tmp_path, show_progress=False)
    assert s2["skipped_already_done"] == 40 and s2["written_now"] == 10
    assert set(files) <= set(shards.shard_files(f"{tmp_path}/shards"))
    assert_exactly_once(tmp_path, 50)
    s3 = run_generate(small(problems=50), tmp_path, show_progress=False)
    assert s3["skipped_already_done"] == 50 and "written_now" not in s3


def _kill_when_busy(cluster, how):
    def go():
        while True:
            q = ray.get(cluster.queue.stats.remote())
            if q["done"] >= 3 and q["leased"] > 0:
                break
            time.sleep(0.05)
        handle, _ = cluster.workers["search-worker-0"]
        if how == "ray.kill":
            ray.kill(handle)
        else:
            os.kill(ray.get(handle.pid.remote()), signal.SIGKILL)

    threading.Thread(target=go, daemon=True).start()


@pytest.mark.parametrize("how", ["ray.kill", "kill -9"])
def test_killed_worker_loses_and_duplicates_nothing(ray_cluster, tmp_path, how):
    s = run_generate(small(problems=60, rollouts=8, trees_per_worker=16), tmp_path,
                     show_progress=False, on_started=lambda c: _kill_when_busy(c, how))
    assert s["workers_replaced"] >= 1
    assert s["requeued"] >= 1  # the dead worker's in-flight problems went back
    assert s["missing"] == 0
    assert_exactly_once(tmp_path, 60)


def test_queue_leases_expire_and_acks_are_final(ray_cluster):
    from actors.queue import ProblemQueue
    from rstar.domains.arith import generate

    q = ProblemQueue.remote(lease_s=0.5)
    probs = generate(3, 0)
    assert ray.get(q.put.remote(probs)) == 3
    assert ray.get(q.put.remote(probs)) == 0  # already queued
    a = ray.get(q.take.remote("a", 2))
    ray.get(q.ack.remote("a", a[0].id))
    time.sleep(0.7)  # "a" never renewed: its other lease expires
    b = ray.get(q.take.remote("b", 5))
    assert {p.id for p in b} == {a[1].id, probs[2].id}
    ray.get(q.nack.remote("b", a[1].id, "boom"))
    st = ray.get(q.stats.remote())
    assert st["done"] == 1 and st["pending"] == 1 and st["leased"] == 1
    assert ray.get(q.put.remote([probs[0]])) == 0  # acked problems never come back


def test_writer_drops_duplicates_and_survives_restart(ray_cluster, tmp_path):
    from actors.writer import ShardWriter
    from rstar.domains.arith import generate
    from tree.node import Tree
    from tree.rows import to_rows

    p = generate(1, 0)[0]
    rows = to_rows(Tree(p.id, p.question, p.answer))
    w = ShardWriter.remote(str(tmp_path / "shards"), 1, 10, 0.1)
    assert ray.get(w.write.remote(p.id, rows)) is True
    assert ray.get(w.write.remote(p.id, rows)) is False
    w2 = ShardWriter.remote(str(tmp_path / "shards"), 1, 10, 0.1)  # a fresh writer, same dir
    assert ray.get(w2.write.remote(p.id, rows)) is False
    assert len(shards.read_table(tmp_path / "shards")) == 1
