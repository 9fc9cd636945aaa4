"""`rstar evolve` end to end (the fast preset), resume, `rstar eval`, `rstar show-tree`, and the
errors users get for bad input. Real Ray, real sandbox, real tiny model, real files."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
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
    d = tmp_path_factory.mktemp("evolve")
    p = rstar("evolve", "--workdir", d, "--config", REPO / "configs" / "fast.yaml", "--quiet")
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
    cfg["schedule"][1].update(prefilter=2.0, train_ppm=False, escalate=[])
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    p = rstar("evolve", "--workdir", d, "--config", tmp_path / "c.yaml", "--quiet")
    assert p.returncode == 0, p.stderr[-3000:]
    m = json.loads((d / "round-2" / "metrics.json").read_text())
    assert m["prefilter_drawn"] == 24
    searched = {r["problem_id"] for r in shards.read_table(
        d / "round-2" / "shards", ["problem_id"]).to_pylist()}
    drawn = {q.id: q for q in generate(24, 2, (1, 2, 3), prefix="r2")}  # seed 0 * 100 + round
    assert searched <= set(drawn) and len(searched) == min(12, 24 - m["prefilter_solved"])
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
