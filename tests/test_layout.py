"""The design card's layout: packages exist, the pure core stays pure, README and CI agree."""

from __future__ import annotations

import ast
import subprocess
import sys

from conftest import REPO

PACKAGES = ["tree", "sandbox", "actors", "trainers", "rstar"]


def test_top_level_layout():
    for name in PACKAGES:
        assert (REPO / name / "__init__.py").is_file(), name
    for name in ["cluster.yaml", "pyproject.toml", "README.md", ".ci/run"]:
        assert (REPO / name).is_file(), name


def test_tree_and_sandbox_import_neither_ray_nor_torch():
    for pkg in ["tree", "sandbox"]:
        for path in (REPO / pkg).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module]
                for n in names:
                    assert n.split(".")[0] not in {"ray", "torch"}, f"{path}: imports {n}"
    code = ("import sys, importlib, pkgutil, tree, sandbox\n"
            "for pkg in (tree, sandbox):\n"
            "    for m in pkgutil.iter_modules(pkg.__path__):\n"
            "        importlib.import_module(pkg.__name__ + '.' + m.name)\n"
            "bad = [m for m in ('ray', 'torch') if m in sys.modules]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_readme_quickstart_matches_ci():
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    start = readme.index("## Quickstart")
    block = readme[start:].split("```")[1]
    commands = [ln for ln in block.splitlines()[1:] if ln.strip() and not ln.startswith("#")]
    assert len(commands) == 2, commands
    assert commands[1].strip() in ci, "the README's test command must be what CI runs"


def test_cli_help_on_every_subcommand():
    from rstar.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert sub.choices
    for name in sub.choices:
        out = subprocess.run([sys.executable, "-m", "rstar.cli", name, "--help"],
                             capture_output=True, text=True, cwd=REPO)
        assert out.returncode == 0 and "usage:" in out.stdout, name


def test_console_script_installed():
    from pathlib import Path

    exe = Path(sys.executable).parent / "rstar"
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "search" in out.stdout


def test_every_shipped_config_loads():
    from rstar.config import EvolveConfig, load_config

    files = sorted((REPO / "configs").glob("*.yaml"))
    assert len(files) >= 3
    from rstar.domains import load_domain

    for f in files:
        cfg = load_config(EvolveConfig, f)
        assert cfg.rounds <= len(cfg.schedule)
        assert load_domain(cfg.domain).name == cfg.domain, f
    coder = load_config(EvolveConfig, REPO / "configs" / "qwen2.5-coder-7b.yaml")
    assert (coder.domain, coder.eval.data, coder.engine.kind) == ("code", "humaneval", "vllm")
    big = load_config(EvolveConfig, REPO / "configs" / "qwen2.5-math-7b.yaml")
    assert big.policy_train.train.lr == 7e-6 and big.engine.kind == "vllm"
    assert [s.rollouts for s in big.schedule] == [8, 16, 16, 16]
    assert [s.value_mode for s in big.schedule] == ["terminal", "terminal", "ppm", "ppm"]


def test_a_partial_nested_section_keeps_its_parents_defaults(tmp_path):
    from rstar.config import EvolveConfig, PPMTrainConfig, load_config

    f = tmp_path / "c.yaml"
    f.write_text("ppm_train:\n  train: {lr: 1e-4}\nengine: {max_tokens: 32}\n")
    cfg = load_config(EvolveConfig, f)
    ppm_default = PPMTrainConfig().train
    assert cfg.ppm_train.train.lr == 1e-4
    # The PPM's own epochs and batch, not TrainConfig's class defaults.
    assert (cfg.ppm_train.train.epochs, cfg.ppm_train.train.batch_size) == (
        ppm_default.epochs, ppm_default.batch_size) != (6, 16)
    assert cfg.engine.kind == EvolveConfig().engine.kind == "auto" and cfg.engine.max_tokens == 32


def test_config_reference_shows_nested_defaults_and_literal_values():
    """``rstar config`` prints the defaults a field really has inside its parent, and spells
    out the values a Literal field accepts."""
    from rstar.config import EvolveConfig, field_docs

    rows = {name: (tp, default) for name, tp, default, _ in field_docs(EvolveConfig)}
    # EvolveConfig serves its trained policy with "auto" (a bare EngineConfig says "scripted").
    assert rows["engine.kind"][1] == "auto" and rows["bootstrap.kind"][1] == "scripted"
    assert rows["policy_train.min_steps"][1] == EvolveConfig().policy_train.min_steps == 0
    assert rows["policy_init"][0] == "Literal['base', 'previous']"
    out = subprocess.run([sys.executable, "-m", "rstar.cli", "config", "evolve"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert ("engine.kind: Literal['scripted', 'hf', 'vllm', 'auto', 'openai', 'none'] = 'auto'"
            in out.stdout)
