"""The domain plug-in API: built-ins through ``load_domain``, and a third-party domain installed
into the venv as a real package that registers in the ``rstar.domains`` entry-point group, run
by ``rstar search`` and ``rstar generate`` in fresh processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from rstar.domains import available_domains, load_domain
from tree.protocols import ProgramVerifier, Verifier

RSTAR = str(Path(sys.executable).with_name("rstar"))

TOY = '''
"""A toy domain: "Double N." problems, a scripted teacher, answers graded as exact integers."""
import random
import re

from rstar.data import Problem


class Exact:
    def extract(self, step):
        m = re.search(r"\\\\boxed\\{(-?\\d+)\\}", step)
        return m.group(1) if m else None

    def check(self, answer, gold):
        return answer is not None and answer.strip() == gold.strip()


class Teacher:
    """One code step (doubling, with a slip now and then), then the answer from its output."""

    def __init__(self, error_rate, fmt):
        self.error_rate, self.fmt = error_rate, fmt

    def propose(self, requests):
        out = []
        for req in requests:
            n = int(re.search(r"Double (\\d+)", req.question).group(1))
            cands = []
            for i in range(req.n):
                rng = random.Random(f"{req.seed}:{i}")
                if req.steps:
                    shown = re.search(r"<output>(.*?)<end_of_output>", req.steps[-1], re.S)
                    cands.append(f"<answer>\\\\boxed{{{shown.group(1).strip()}}}<end_of_answer>")
                else:
                    k = 3 if rng.random() < self.error_rate else 2
                    cands.append(f"<code>\\n# Step 1: double it\\nprint({n} * {k})\\n<end_of_code>")
            out.append(cands)
        return out


class ToyDomain:
    name = "toy"
    verifier = Exact()
    preload = ()
    generated = True

    def problems(self, n, seed, difficulties=(), prefix="toy"):
        rng = random.Random(seed)
        out = []
        for i in range(n):
            x = rng.randint(1, 99)
            out.append(Problem(id=f"{prefix}-{seed}-{i}", question=f"Double {x}.",
                               answer=str(2 * x), meta={"difficulty": 1}))
        return out

    def load(self, source):
        raise ValueError("toy: generated only")

    def teacher(self, error_rate, fmt):
        return Teacher(error_rate, fmt)
'''


@pytest.fixture(scope="module")
def toy_installed(tmp_path_factory):
    """The toy domain as an installed distribution (pip, no network), removed afterwards."""
    pkg = tmp_path_factory.mktemp("toy")
    (pkg / "rstar_toy_domain").mkdir()
    (pkg / "rstar_toy_domain" / "__init__.py").write_text(TOY)
    (pkg / "pyproject.toml").write_text(textwrap.dedent('''
        [build-system]
        requires = ["setuptools"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "rstar-toy-domain"
        version = "0.1"

        [project.entry-points."rstar.domains"]
        toy = "rstar_toy_domain:ToyDomain"

        [tool.setuptools]
        packages = ["rstar_toy_domain"]
    '''))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "install", "--no-deps", "--no-build-isolation", "--no-index", str(pkg)],
                   check=True, capture_output=True)
    try:
        yield pkg
    finally:
        subprocess.run([*pip, "uninstall", "-y", "rstar-toy-domain"], capture_output=True)


def test_builtin_domains_load_with_their_verifiers():
    assert {"arith", "math", "code"} <= set(available_domains())
    for name in ("arith", "math", "code"):
        d = load_domain(name)
        assert d.name == name and isinstance(d.verifier, Verifier)
    assert isinstance(load_domain("code").verifier, ProgramVerifier)
    assert not isinstance(load_domain("math").verifier, ProgramVerifier)
    assert load_domain("arith").problems(3, 0, (2,))[0].meta["difficulty"] == 2
    with pytest.raises(ValueError, match="generates no problems"):
        load_domain("math").problems(3, 0)
    with pytest.raises(ValueError, match=r"unknown domain 'nope'.*entry-point group"):
        load_domain("nope")


def test_an_installed_domain_runs_search_and_generate(toy_installed, tmp_path):
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    out = tmp_path / "trees.parquet"
    r = subprocess.run([RSTAR, "search", "--domain", "toy", "--problems", "12", "--rollouts", "4",
                        "--out", str(out), "--quiet"], capture_output=True, text=True, env=env,
                       cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = pq.read_table(out).to_pylist()
    assert {row["problem_id"].rsplit("-", 1)[0] for row in rows} == {"toy-0"}
    assert any(row["correct"] for row in rows) and not all(
        row["correct"] for row in rows if row["correct"] is not None)   # the slips are caught
    assert "solved by search" in r.stdout

    work = tmp_path / "gen"
    r = subprocess.run([RSTAR, "generate", "--domain", "toy", "--problems", "6", "--workdir",
                        str(work), "--quiet"], capture_output=True, text=True, env=env,
                       cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["in_shards"] == 6 and summary["missing"] == 0 and summary["solved_frac"] > 0
    ids = {row["problem_id"] for row in pq.read_table(work / "shards").to_pylist()}
    assert len(ids) == 6 and all(i.startswith("toy-") for i in ids)
