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
    """(policy, ppm) dirs: the tiny Qwen2 after ~120 plain SFT steps and a PPM from it
    (``trainers.tiny_model.quick_trained``)."""
    from trainers.tiny_model import quick_trained

    return quick_trained(tmp_path_factory.mktemp("trained_tiny"))
