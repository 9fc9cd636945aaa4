"""Shared fixtures. Tests run real components: a real sandbox, real files, (later) a real Ray."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Ray 2.60 writes ~/.ray/auth_token on ray.init(); without this, later `ray start`/job submit
# switch to token auth and fail. Tests never want auth.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def sandbox():
    """One warm sandbox for every test that only needs programs run."""
    from sandbox import Sandbox

    with Sandbox(timeout_s=5.0, workers=2) as sb:
        yield sb


@pytest.fixture(scope="session")
def trained_tiny(tmp_path_factory):
    """(policy, ppm) dirs: the tiny Qwen2 after ~120 plain SFT steps on scripted-teacher
    solutions (~40 s), so most steps it writes run (a random model's all die at the first
    expansion, leaving nothing to value), and a PPM initialised from it with a seeded head."""
    import torch
    from transformers import (AutoModelForCausalLM, AutoModelForSequenceClassification,
                              AutoTokenizer)

    from trainers.tiny_model import make_tiny_model, training_texts

    out = tmp_path_factory.mktemp("trained_tiny")
    base = make_tiny_model(out / "base", seed=0)
    tok = AutoTokenizer.from_pretrained(base)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_pretrained(base)
        texts = training_texts(16 * 40, seed=1)
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
        for i in range(120):
            enc = tok(texts[(i % 40) * 16:(i % 40 + 1) * 16], return_tensors="pt",
                      padding=True, add_special_tokens=False)
            labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
            model(**enc, labels=labels).loss.backward()
            opt.step()
            opt.zero_grad()
        model.save_pretrained(out / "policy")
        tok.save_pretrained(out / "policy")
        ppm = AutoModelForSequenceClassification.from_pretrained(out / "policy", num_labels=1)
        torch.nn.init.normal_(ppm.score.weight, std=0.05)
        ppm.save_pretrained(out / "ppm")
        tok.save_pretrained(out / "ppm")
    return out / "policy", out / "ppm"
