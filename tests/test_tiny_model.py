"""The tiny-model factory builds a real Qwen2 checkpoint that loads like a hub one (no mocks)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

from trainers.tiny_model import (build_tokenizer, make_tiny_model, param_count, special_tokens,
                                 training_texts)
from tree.steps import StepFormat

FMT = StepFormat()
UNICODE = "naïve café ½ ∑ 日本 — «ok» 🙂 tab\there\r\nend"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Two threads on a shared 2-core box spin against each other; one is several times faster."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "seed0", seed=0)


def test_reload_gives_identical_ids(tiny: Path) -> None:
    built = build_tokenizer(training_texts(2000, seed=0))  # make_tiny_model's defaults
    loaded = AutoTokenizer.from_pretrained(tiny)
    assert type(loaded).__name__ == "Qwen2Tokenizer"
    assert loaded.padding_side == "left"
    assert loaded.get_vocab() == built.get_vocab()
    fresh = training_texts(50, seed=7)  # unseen problems, same format
    for text in fresh + [UNICODE, "<|endoftext|>x<end_of_step><end_of_step>y"]:
        ids = loaded(text, add_special_tokens=False)["input_ids"]
        assert ids == built(text, add_special_tokens=False)["input_ids"]
        # Byte-level: every string round-trips, unicode included (no unk, no lossy bytes).
        assert loaded.decode(ids, skip_special_tokens=False) == text
    assert len(loaded(fresh[0])["input_ids"]) < len(fresh[0]) / 2  # BPE actually compresses


def test_numbers_start_with_a_space_digit_token(tiny: Path) -> None:
    """" 59" is " 5" then "9", after reload too, so a number's first digit is keyed on the word
    before it (see build_tokenizer); digits without a space before them stay single digits."""
    tok = AutoTokenizer.from_pretrained(tiny)
    text = "(1) Lily has 59 stickers.\nstickers = 59 * 3\n<output>177<end_of_output>"
    pieces = [tok.decode([i]) for i in tok(text, add_special_tokens=False)["input_ids"]]
    assert pieces[:3] == ["(", "1", ")"]
    assert pieces.count(" 5") == 2 and " " not in pieces[:pieces.index(" 5")]
    assert pieces[pieces.index(" 5") + 1] == "9"
    assert pieces[-5:] == ["<output>", "1", "7", "7", "<end_of_output>"]
    assert all(len(tok.encode(f" {d}", add_special_tokens=False)) == 1 for d in range(10))


def test_delimiters_are_single_special_tokens(tiny: Path) -> None:
    tok = AutoTokenizer.from_pretrained(tiny)
    assert tok.eos_token == tok.pad_token == "<|endoftext|>"
    seen = set()
    for s in special_tokens(FMT):
        ids = tok.encode(s, add_special_tokens=False)
        assert len(ids) == 1, s
        seen.add(ids[0])
        # Glued to text on both sides it is still matched whole, never split or merged.
        glued = tok.encode(f"x = 1{s}# y", add_special_tokens=False)
        assert ids[0] in glued
    assert len(seen) == len(special_tokens(FMT))
    assert set(tok.all_special_ids) >= seen


def test_model_loads_via_auto_classes(tiny: Path) -> None:
    tok = AutoTokenizer.from_pretrained(tiny)
    model = AutoModelForCausalLM.from_pretrained(tiny)
    assert model.config.model_type == "qwen2"
    assert 1_000_000 <= param_count(model) <= 5_000_000
    assert model.config.vocab_size == len(tok)
    assert model.config.eos_token_id == model.config.pad_token_id == tok.eos_token_id
    assert model.generation_config.pad_token_id == tok.pad_token_id
    assert (tiny / "model.safetensors").exists()
    # The PPM is initialised from the policy checkpoint: same directory, a 1-output head.
    ppm = AutoModelForSequenceClassification.from_pretrained(tiny, num_labels=1)
    assert type(ppm).__name__ == "Qwen2ForSequenceClassification"
    assert ppm.config.pad_token_id == tok.pad_token_id  # else it cannot pool padded batches
    backbone = ppm.model.state_dict()
    for k, v in model.model.state_dict().items():
        assert torch.equal(backbone[k], v), k
    with torch.inference_mode():
        out = ppm(**tok(["a b", "a"], return_tensors="pt", padding=True)).logits
    assert out.shape == (2, 1)


def test_deterministic_in_seed(tiny: Path, tmp_path: Path) -> None:
    again = make_tiny_model(tmp_path / "again", seed=0)
    other = make_tiny_model(tmp_path / "other", seed=1)
    a = AutoModelForCausalLM.from_pretrained(tiny).state_dict()
    b = AutoModelForCausalLM.from_pretrained(again).state_dict()
    c = AutoModelForCausalLM.from_pretrained(other).state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (tiny / "tokenizer.json").read_bytes() == (again / "tokenizer.json").read_bytes()
    assert not all(a[k].shape == c[k].shape and torch.equal(a[k], c[k]) for k in a)


def test_building_does_not_touch_global_rng(tmp_path: Path) -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    make_tiny_model(tmp_path / "m", seed=5, n_texts=200)
    assert torch.equal(torch.rand(3), expected)
