"""`rstar evolve` end to end (the fast preset), resume, `rstar eval`, `rstar show-tree`, the
errors users get for bad input, and experiment tracking (TensorBoard read back with its own
reader, an offline W&B run from its run file). Real Ray, real sandbox, real tiny model, real
files."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

RSTAR = str(Path(sys.executable).parent / "rstar")
# rstar sets RAY_AUTH_MODE itself; the benchmarks by name come from the repo's own rows.
ENV = {**{k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"},
       "RSTAR_DATA_DIR": str(REPO / "tests" / "data")}


def rstar(*args, timeout=900):
    return subprocess.run([RSTAR, *map(str, args)], capture_output=True, text=True, env=ENV,
                          timeout=timeout, cwd=REPO)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    import yaml

    d = tmp_path_factory.mktemp("evolve")
    # The fast preset with both trackers on (test_tracking reads them back).
    cfg = yaml.safe_load((REPO / "configs" / "fast.yaml").read_text())
    cfg["tracking"] = {"tensorboard": "tb", "wandb": {"project": "rstar-test", "mode": "offline"}}
    (d / "fast-tracked.yaml").write_text(yaml.safe_dump(cfg))
    p = rstar("evolve", "--workdir", d, "--config", d / "fast-tracked.yaml", "--quiet")
    assert p.returncode == 0, p.stderr[-3000:]
    return d


def test_fast_preset_summary_and_ppm_augmented_last_round(run):
    rows = json.loads((run / "summary.json").read_text())
    assert [r["round"] for r in rows] == [1, 2]
    for r in rows:
        for key in ("train_solved_frac", "policy_greedy_acc", "search_acc", "maj_acc",
                    "ppm_pair_acc", "wall_s"):
            assert isinstance(r[key], (int, float)) and r[key] >= 0, key
        assert 0 <= r["policy_greedy_acc"] <= 1 and 0 <= r["search_acc"] <= 1
        # The PPM's ordering of the policy's own samples: a share, or None without a pair.
        assert r["ppm_sample_pairs"] >= 0
        assert (r["ppm_sample_order_acc"] is None) == (r["ppm_sample_pairs"] == 0)
        # What the round's sandboxes got, recorded (root: full, without a fallback).
        assert (r["sandbox_isolation"], r["sandbox_fallback"]) == (
            ("full", None) if os.geteuid() == 0 else ("basic", "full isolation needs root"))
    assert rows[0]["value_mode"] == "terminal" and rows[0]["ppm_scored_steps"] == 0
    assert rows[-1]["value_mode"] == "ppm" and rows[-1]["ppm_scored_steps"] > 0
    assert rows[0]["train_solved_frac"] > 0.5  # the scripted teacher's round
    # The audit of what the answer check let into SFT: the teacher's picks are computed (its
    # slips cannot land on the right answer), by difficulty.
    for r in rows:
        assert r["sft_examples"] >= 0 and 0 <= r["sft_computes_frac"] <= 1
        assert set(r["sft_computes_by_difficulty"]) <= {"1", "2", "3"}
    assert rows[0]["sft_examples"] > 0 and rows[0]["sft_computes_frac"] > 0.9
    assert (run / "summary.png").stat().st_size > 1000
    t = rows[-1]["targets"]
    assert t["rounds"] == 2 and t["loop_budget_s"] == 900 and t["total_budget_s"] == 1800
    assert t["wall_s_total"] == pytest.approx(sum(r["wall_s"] for r in rows), abs=0.2)
    assert t["loop_s_total"] == pytest.approx(
        sum(r["wall_s"] - r["eval_s"] for r in rows), abs=0.2)
    # The gain is paired by problem: both rounds measured the same 6 held-out problems.
    first, last = (
        [json.loads(ln) for ln in (run / f"round-{r}" / "eval.jsonl").read_text().splitlines()]
        for r in (1, 2))
    assert [x["id"] for x in first] == [x["id"] for x in last] and len(first) == 6
    gain = sum(b["greedy"] - a["greedy"] for a, b in zip(first, last)) / 6
    assert t["greedy_gain"]["diff"] == pytest.approx(gain, abs=1e-4)
    assert t["greedy_gain"]["ci"][0] <= gain <= t["greedy_gain"]["ci"][1]
    assert t["greedy_gain_met"] == (gain >= 0.08)
    # Per difficulty with intervals; the bootstrap teacher's single attempt in round 1.
    for d, a in rows[0]["policy_greedy_by_difficulty"].items():
        assert a["ci"][0] <= a["acc"] <= a["ci"][1] and a["n"] >= 1
    assert sum(a["n"] for a in rows[0]["policy_greedy_by_difficulty"].values()) == 6
    assert "teacher" in first[0] and 0 <= rows[0]["teacher_acc"] <= 1
    assert "teacher" not in last[0]
    assert (run / "difficulty.png").stat().st_size > 1000
    assert "targets" not in rows[0]
    for r in (1, 2):
        rd = run / f"round-{r}"
        assert list((rd / "shards").glob("*.parquet"))
        assert (rd / "policy" / "config.json").exists() and (rd / "ppm" / "config.json").exists()


def test_targets_say_which_miss_and_by_how_much():
    from rstar.config import EvolveConfig
    from rstar.measure import targets

    rows = [{"wall_s": 300.0, "eval_s": 100.0, "policy_greedy_acc": 0.3},
            {"wall_s": 400.0, "eval_s": 100.0, "policy_greedy_acc": 0.5}]
    # Round 1 solves problems 0-3 of 10 (easy ones); round 4 also 4-5, two of them hard.
    first = [{"id": str(i), "difficulty": 1 + i, "greedy": i < 3} for i in range(10)]
    last = [{"id": str(i), "difficulty": 1 + i, "greedy": i < 5,
             "maj": i < 4, "search": i < 5} for i in range(10)]
    cfg = EvolveConfig(time_budget_s=600, total_budget_s=600)
    t = targets(rows, first, last, cfg)
    assert t["loop_s_total"] == 500 and t["loop_met"] and not t["total_met"]
    assert t["greedy_gain"]["diff"] == pytest.approx(0.2) and t["greedy_gain_met"]
    lo, hi = t["greedy_gain"]["ci"]
    assert lo < 0.2 < hi and hi - lo < 0.6  # two problems of ten gained, none lost
    # Hard = 5+ operations: problems 4..9, of which 4 (difficulty 5) was gained: 1/6.
    assert t["hard_gain"]["n"] == 6 and t["hard_gain"]["diff"] == pytest.approx(1 / 6, abs=1e-4)
    assert not t["hard_gain_met"]
    assert t["search_minus_maj"]["diff"] == pytest.approx(0.1) and t["search_met"]
    assert not t["all_met"]
    assert targets(rows, first, last, EvolveConfig(
        time_budget_s=600, total_budget_s=0,
        targets=dataclasses.replace(cfg.targets, hard_gain=0.1)))["all_met"]
    t = targets(rows[:1], first, first, cfg)  # one round: no gain to check, no search run
    assert "greedy_gain" not in t and "search_minus_maj" not in t and not t["all_met"]


def test_unsolved_problems_are_escalated_to_more_rollouts(run):
    from rstar import shards

    rows = shards.read_table(run / "round-2" / "shards",
                             ["problem_id", "terminal", "correct"]).to_pylist()
    base = {r["problem_id"] for r in rows if "#" not in r["problem_id"]}
    solved = {r["problem_id"] for r in rows if r["terminal"] and r["correct"]}
    escalated = {r["problem_id"] for r in rows if "#" in r["problem_id"]}
    assert len(base) == 12
    # Exactly the problems the 4-rollout search left unsolved got an 8-rollout tree.
    assert escalated == {f"{p}#x8" for p in base - solved}
    metrics = json.loads((run / "round-2" / "metrics.json").read_text())
    assert sum(metrics["difficulty"].values()) == 12


def test_resume_redoes_only_the_unfinished_step(run, tmp_path):
    d = tmp_path / "copy"
    shutil.copytree(run, d)
    rd = d / "round-2"
    shards_before = sorted(p.name for p in (rd / "shards").glob("*.parquet"))
    policy_mtime = (rd / "policy" / "config.json").stat().st_mtime
    # As if the run was killed while training round 2's PPM.
    shutil.rmtree(rd / "ppm")
    (rd / "metrics.json").unlink()
    p = rstar("evolve", "--workdir", d, "--config", REPO / "configs" / "fast.yaml", "--quiet")
    assert p.returncode == 0, p.stderr[-3000:]
    assert "=== round 1" not in p.stdout and "=== round 2" in p.stdout
    assert sorted(q.name for q in (rd / "shards").glob("*.parquet")) == shards_before
    assert (rd / "policy" / "config.json").stat().st_mtime == policy_mtime
    assert (rd / "ppm" / "config.json").exists() and (rd / "metrics.json").exists()
    assert len(json.loads((d / "summary.json").read_text())) == 2


def test_a_policy_below_the_sft_probe_is_retrained_on_another_order_and_the_best_kept(
        run, tmp_path):
    import yaml

    from rstar.configio import load_config
    from rstar.domains import load_domain
    from rstar.evolve import probe_greedy
    from rstar.evolve_config import EvolveConfig

    d = tmp_path / "copy"
    shutil.copytree(run, d, ignore=shutil.ignore_patterns("round-2", "summary.*"))
    rd = d / "round-1"
    shutil.rmtree(rd / "policy")
    (rd / "metrics.json").unlink()
    cfg = yaml.safe_load((REPO / "configs" / "fast.yaml").read_text())
    # A bar no policy reaches: both attempts run and the better probe is kept.
    cfg["schedule"][0].update(sft_probe=1.01, sft_attempts=2, sft_probe_problems=8)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    p = rstar("evolve", "--workdir", d, "--config", tmp_path / "c.yaml", "--rounds", 1, "--quiet")
    assert p.returncode == 0, p.stderr[-3000:]
    att = json.loads((rd / "metrics.json").read_text())["sft_attempts"]
    assert [a["seed"] for a in att] == [0, 1] and sum(a["kept"] for a in att) == 1, att
    kept = next(a for a in att if a["kept"])
    assert kept["probe"] == max(a["probe"] for a in att)
    weights = [(rd / f"sft-try{k}" / "policy" / "model.safetensors").read_bytes() for k in (1, 2)]
    assert weights[0] != weights[1]
    assert (rd / "policy" / "model.safetensors").read_bytes() == weights[att.index(kept)]
    # The recorded probe is what the kept policy scores, recomputed on the same draw.
    c = load_config(EvolveConfig, tmp_path / "c.yaml")
    probe = load_domain("arith").problems(8, 7_000_000 + 1, (1, 2), prefix="probe1")
    assert round(probe_greedy(c, str(rd / "policy"), probe), 4) == kept["probe"]
    assert "SFT attempt 2 (train seed 1)" in p.stdout


def test_frontier_pool_searches_only_what_greedy_misses_and_a_round_can_skip_its_ppm(
        run, tmp_path):
    import yaml

    from rstar import shards
    from rstar.config import SandboxConfig
    from rstar.domains.arith import generate
    from rstar.evaluate import greedy_solve, hf_policy
    from tree.steps import StepFormat

    d = tmp_path / "copy"
    shutil.copytree(run, d)
    shutil.rmtree(d / "round-2")
    cfg = yaml.safe_load((REPO / "configs" / "fast.yaml").read_text())
    # One draw of 12; what greedy solves there is made up from a second, up to 24 drawn.
    cfg["schedule"][1].update(prefilter=1.0, prefilter_max=2.0, train_ppm=False, escalate=[])
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    p = rstar("evolve", "--workdir", d, "--config", tmp_path / "c.yaml", "--quiet")
    assert p.returncode == 0, p.stderr[-3000:]
    m = json.loads((d / "round-2" / "metrics.json").read_text())
    n, left = m["prefilter_drawn"], m["prefilter_drawn"] - m["prefilter_solved"]
    assert 12 <= n <= 24 and (left >= 12 or n == 24), m
    assert (m["prefilter_waves"] == 1) == (m["prefilter_solved"] == 0), m
    searched = {r["problem_id"] for r in shards.read_table(
        d / "round-2" / "shards", ["problem_id"]).to_pylist()}
    drawn = {q.id: q for q in generate(n, 2, (1, 2, 3), prefix="r2")}  # seed 0 * 100 + round
    assert searched <= set(drawn) and len(searched) == min(12, left)
    # Checked independently: round 1's policy, greedy, fails every problem searched.
    policy = hf_policy(str(d / "round-1" / "policy"), StepFormat(), max_tokens=48)
    assert not any(greedy_solve(policy, [drawn[i] for i in sorted(searched)], StepFormat(),
                                SandboxConfig()))
    # No PPM trained: round 1's carried over, saying so.
    tm = json.loads((d / "round-2" / "ppm" / "train_metrics.json").read_text())
    assert tm["carried_over_from"].endswith("round-1/ppm") and m["ppm_s"] is None
    # A PPM-guided round with no PPM before it is a config error naming the round.
    cfg["schedule"][0]["train_ppm"] = False
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(cfg))
    p = rstar("evolve", "--workdir", tmp_path / "bad", "--config", tmp_path / "bad.yaml")
    assert p.returncode == 2 and "schedule[1].value_mode" in p.stderr, p.stderr[-2000:]


def test_eval_on_a_gsm8k_slice(run, tmp_path):
    # The repo's own GSM8K-format rows (tests/data), so this runs without the benchmark files.
    out = tmp_path / "ev"
    p = rstar("eval", "--benchmark", "gsm8k", "--policy", run / "round-1" / "policy",
              "--ppm", run / "round-1" / "ppm", "-n", 2, "--rollouts", 4, "--candidates", 2,
              "--max-tokens", 32, "--out", out)
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads((out / "results.json").read_text())
    assert res["problems"] == 10 and res["n"] == 2 and res["select"] == "ppm_best"
    assert res["sandbox_isolation"] == ("full" if os.geteuid() == 0 else "basic")
    assert res["search_acc"] == res["search_acc_ppm_best"]
    for key in ("greedy_acc", "maj_acc", "best_of_n_acc", "search_acc", "search_acc_ppm_vote",
                "search_acc_ppm_weighted", "search_acc_path_vote", "search_acc_path_ppm"):
        assert 0 <= res[key] <= 1
    assert "| MCTS + PPM" in (out / "results.md").read_text()
    # One bar per phase, each run to its end (the trees of 10 problems, 2 samples each).
    bars = p.stderr.replace("\r", "\n").splitlines()
    for name, total in (("greedy", 10), ("2 samples", 20), ("search", 10)):
        assert any(b.startswith(f"eval {name}: 100%") and f"{total}/{total}" in b for b in bars)


def test_show_tree_renders_html(run, tmp_path):
    from rstar import shards

    # A tree whose search merged duplicate candidates, so the page must show a count.
    rows = shards.read_table(run / "round-1" / "shards", ["problem_id", "count"]).to_pylist()
    pid = next(r["problem_id"] for r in rows if r["count"] > 1)
    most = max(r["count"] for r in rows if r["problem_id"] == pid)
    out = tmp_path / "t.html"
    p = rstar("show-tree", "--workdir", run / "round-1", "--problem", pid, "--out", out)
    assert p.returncode == 0, p.stderr
    page = out.read_text()
    assert page.startswith("<!doctype html>") and pid in page and "Q=" in page
    assert f"written {most}x" in page


def test_help_says_what_rstar_sets_for_local_clusters():
    p = rstar("--help")
    assert p.returncode == 0 and "RAY_AUTH_MODE=disabled" in p.stdout and "RAY_ADDRESS" in p.stdout


def test_bad_input_errors_name_the_thing(run, tmp_path):
    p = rstar("eval", "--benchmark", "nosuch", "--policy", run / "round-1" / "policy")
    assert p.returncode == 2 and "nosuch" in p.stderr and "gsm8k" in p.stderr
    p = rstar("eval", "--benchmark", "gsm8k", "--policy", tmp_path / "missing")
    assert p.returncode == 2 and "missing" in p.stderr
    bad = tmp_path / "round"
    shutil.copytree(run / "round-1" / "shards", bad / "shards")
    (bad / "shards" / "part-corrupt.parquet").write_bytes(b"not parquet at all")
    p = rstar("train-ppm", "--workdir", bad)
    assert p.returncode == 2 and "part-corrupt.parquet" in p.stderr


def test_math_pool_drops_what_the_previous_round_found_easy(tmp_path):
    from rstar.config import EvolveConfig, RoundSpec
    from rstar.evolve import difficulty_classes, round_dir, round_pool
    from rstar.shards import write_trees
    from tree.node import Tree

    data = tmp_path / "pool.jsonl"
    data.write_text("".join(json.dumps({"question": f"{i}+1?", "answer": str(i + 1)}) + "\n"
                            for i in range(6)))
    trees = []
    # load_jsonl names problems <file stem>/<line>.
    for pid, verdicts in {"pool/1": [True, True], "pool/2": [True, False], "pool/3": [False],
                          "pool/4": [True]}.items():
        t = Tree(pid, "q")
        for v in verdicts:
            n = t.add(t.root, "step")
            n.terminal, n.correct = True, v
        trees.append(t)
    shard_dir = round_dir(tmp_path, 1) / "shards"
    shard_dir.mkdir(parents=True)
    write_trees(shard_dir / "r1.parquet", trees, round=1)
    assert difficulty_classes(shard_dir) == {"pool/1": "easy", "pool/2": "medium",
                                             "pool/3": "hard", "pool/4": "easy"}
    cfg = EvolveConfig(domain="math", data=str(data))
    spec = RoundSpec(problems=3)
    assert [p.id for p in round_pool(cfg, 1, spec, tmp_path)] == ["pool/1", "pool/2", "pool/3"]
    assert [p.id for p in round_pool(cfg, 2, spec, tmp_path)] == ["pool/2", "pool/3", "pool/5"]


# ------------------------------------------------------------- experiment tracking
def _tensorboard(logdir) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0})   # 0: keep every event
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _wandb_history(run_file) -> list[dict]:
    """The history rows of a ``run-*.wandb`` file: a 7-byte header, then LevelDB-log records
    (crc32, length, type; split at 32 KiB blocks) holding protobuf ``Record``s."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = run_file.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, records, part = 7, 32768, [], b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:                       # a block's tail too short for a header: padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if length == 0 and kind == 0:
            break
        part += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):                 # FULL or LAST: a whole record
            records.append(part)
            part = b""
    rows = []
    for raw in records:
        rec = pb.Record()
        rec.ParseFromString(raw)
        if rec.WhichOneof("record_type") == "history":
            rows.append({i.key or "/".join(i.nested_key): json.loads(i.value_json)
                         for i in rec.history.item})
    return rows


def test_tensorboard_has_every_training_step_and_round_metric(run):
    tags = _tensorboard(run / "tb")
    summary = json.loads((run / "summary.json").read_text())
    for r in (1, 2):
        for job, rate in (("policy", "tokens_per_s"), ("ppm", "texts_per_s")):
            steps = json.loads((run / f"round-{r}" / job / "train_metrics.json").read_text())
            if "carried_over_from" in steps:
                continue
            loss = tags[f"round-{r}/{job}/loss"]
            # One point per optimizer step, 1..steps, each a finite positive loss.
            assert [s for s, _ in loss] == list(range(1, steps["steps"] + 1)), (r, job)
            assert all(v > 0 for _, v in loss)
            assert all(v > 0 for _, v in tags[f"round-{r}/{job}/{rate}"])
            lrs = [v for _, v in tags[f"round-{r}/{job}/lr"]]
            assert lrs[-1] < max(lrs)      # the linear schedule decays
    for key in ("policy_greedy_acc", "maj_acc", "search_acc", "ppm_pair_acc", "wall_s"):
        assert [s for s, _ in tags[f"round/{key}"]] == [1, 2]
        for (_, v), row in zip(tags[f"round/{key}"], summary):
            assert v == pytest.approx(row[key], rel=1e-5), key
    # Nested metrics flattened: per difficulty and the interval's ends.
    d = next(iter(summary[-1]["policy_greedy_by_difficulty"]))
    assert tags[f"round/policy_greedy_by_difficulty/{d}/acc"][-1][1] == pytest.approx(
        summary[-1]["policy_greedy_by_difficulty"][d]["acc"])
    lo, hi = summary[-1]["policy_greedy_ci"]
    assert tags["round/policy_greedy_ci/0"][-1][1] == pytest.approx(lo)
    assert tags["round/policy_greedy_ci/1"][-1][1] == pytest.approx(hi)


def test_offline_wandb_run_holds_the_same_scalars(run):
    (run_dir,) = (run / "wandb").glob("offline-run-*")
    (run_file,) = run_dir.glob("run-*.wandb")
    rows = _wandb_history(run_file)
    summary = json.loads((run / "summary.json").read_text())
    rounds = [row for row in rows if "round/step" in row]
    assert [row["round/step"] for row in rounds] == [1, 2]
    for row, want in zip(rounds, summary):
        assert row["round/policy_greedy_acc"] == pytest.approx(want["policy_greedy_acc"])
    steps = json.loads((run / "round-1" / "policy" / "train_metrics.json").read_text())["steps"]
    sft = [row for row in rows if "round-1/policy/step" in row]
    assert [row["round-1/policy/step"] for row in sft] == list(range(1, steps + 1))
    assert all(row["round-1/policy/loss"] > 0 for row in sft)


def test_tracking_off_writes_nothing_and_bad_keys_are_named(tmp_path):
    from rstar.config import ConfigError, EvolveConfig, load_config
    from rstar.tracking import Tracker, TrackingConfig

    t = Tracker(TrackingConfig(), str(tmp_path), "off")
    t.log({"a": 1.0}, 1, "round")
    t.close()
    assert not t.enabled and list(tmp_path.iterdir()) == []
    bad = tmp_path / "bad.yaml"
    bad.write_text("tracking: {wandb: {project: p, mode: sometimes}}\n")
    with pytest.raises(ConfigError, match="tracking.wandb.mode"):
        load_config(EvolveConfig, bad)


# ------------------------------------------------------- shards in users' Arrow tools

def _node_rows(trees) -> list[str]:
    from tree.rows import to_rows

    return sorted((json.dumps(r, sort_keys=True) for t in trees for r in to_rows(t)))


def test_a_rounds_shards_open_in_pandas_ray_data_and_datasets(run, tmp_path):
    """One round's ``shards/`` as users open it, each reader's rows rebuilt into the same trees
    (``tree.rows.from_rows``) as the project's own reader gives."""
    import datasets
    import pandas as pd
    import ray

    from rstar import shards
    from tree.rows import COLUMNS, from_rows

    shard_dir = run / "round-1" / "shards"
    want = _node_rows(shards.read_trees(shard_dir))
    assert len(want) > 100
    df = pd.read_parquet(shard_dir)
    assert list(df.columns) == [*COLUMNS, *shards.EXTRA_COLUMNS]
    rows = df.astype(object).where(df.notna(), None).to_dict("records")
    assert _node_rows(from_rows(rows)) == want
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        assert _node_rows(from_rows(ray.data.read_parquet(str(shard_dir)).take_all())) == want
    finally:
        ray.shutdown()
    hf = datasets.load_dataset("parquet", data_files=str(shard_dir / "*.parquet"), split="train",
                               cache_dir=str(tmp_path / "hf"))
    assert hf.num_rows == len(want)
    assert _node_rows(from_rows(hf)) == want


def test_the_shard_schema_is_documented_in_one_place():
    from rstar import shards
    from tree.rows import COLUMNS

    doc = (REPO / "docs" / "shards.md").read_text()
    documented = dict(re.findall(r"^\| `(\w+)` \| `(\w+)` \|", doc, re.M))
    assert documented == {**COLUMNS, **shards.EXTRA_COLUMNS}
