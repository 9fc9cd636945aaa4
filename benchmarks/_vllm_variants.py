"""Shared by the vLLM benchmarks: run each variant in a fresh child process (vLLM reads its
settings at start and keeps one engine per process) and collect the child's marked result line
(vLLM logs to stdout too)."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

MARK = "RESULT "


def report(res: dict) -> None:
    """The child's side: print its result where ``run_variants`` finds it."""
    print(MARK + json.dumps(res), flush=True)


def run_variants(script: str, model: str | None, variants, args, model_fn=None) -> dict:
    """``script --one MODEL FLAG --prompts P --n N --tokens T`` once per ``(name, flag)`` of
    ``variants``, printing each result; ``model`` None: an untrained tiny policy (speed does not
    depend on the weights). ``variants`` may be a function of the model path."""
    with tempfile.TemporaryDirectory() as tmp:
        if not model:
            from trainers.tiny_model import make_tiny_model

            model = str(make_tiny_model(Path(tmp) / "policy", seed=0))
        if callable(variants):
            variants = variants(model)
        width = max(len(name) for name, _ in variants)
        res = {}
        for name, flag in variants:
            out = subprocess.run([sys.executable, script, "--one", model, flag,
                                  "--prompts", str(args.prompts), "--n", str(args.n),
                                  "--tokens", str(args.tokens)],
                                 capture_output=True, text=True, check=True)
            line = next(x for x in out.stdout.splitlines() if x.startswith(MARK))
            res[name] = json.loads(line[len(MARK):])
            print(f"{name:>{width}}: {res[name]}", flush=True)
    return res
