"""Full isolation wherever Python is installed: a venv under /tmp (in a 0700 directory, as
pytest's and mktemp's are), an import directory `nobody` cannot read, a clean and loud fallback.
Real worker processes, real namespaces, real venvs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import uuid
from pathlib import Path

import pytest

from test_sandbox import REPO, needs_full


def _venv(tmp_path: Path, unreadable: bool = False) -> Path:
    """A venv under `tmp_path` (pytest's, inside a 0700 dir under /tmp) holding a module of its
    own; a .pth adds this venv's site-packages (sympy) and, if asked, an import directory
    `nobody` cannot read. Run it with PYTHONPATH=<repo> (the sandbox's workers do not see it)."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next(venv.glob("lib/python*/site-packages"))
    (site / "tmp_only_mod.py").write_text("WHERE = __file__\n")
    lines = [sysconfig.get_paths()["purelib"]]
    if unreadable:
        closed = tmp_path / "closed"
        closed.mkdir(mode=0o700)
        lines.append(str(closed))
    (site / "links.pth").write_text("\n".join(lines) + "\n")
    return venv


def _run_in(venv: Path, isolation: str, *codes: str) -> dict:
    script = ("import json, sys\nfrom sandbox import Sandbox\n"
              f"with Sandbox(workers=1, isolation={isolation!r}) as sb:\n"
              f"    rs = [sb.run(c) for c in {list(codes)!r}]\n"
              "    print(json.dumps({'stats': sb.stats(), 'note': sb.fallback_note(),\n"
              "                      'results': [r.__dict__ for r in rs]}))\n")
    p = subprocess.run([str(venv / "bin" / "python"), "-c", script], capture_output=True,
                       text=True, timeout=120, cwd="/", env={**os.environ, "PYTHONPATH": str(REPO)})
    assert p.returncode == 0 or isolation == "full", p.stderr
    return json.loads(p.stdout) if p.returncode == 0 else {"stderr": p.stderr}


IMPORTS = "import sympy, tmp_only_mod\nprint(sympy.Integer(6) * 7, tmp_only_mod.WHERE)"


@needs_full
def test_full_isolation_with_a_venv_under_tmp(tmp_path):
    venv = _venv(tmp_path)
    site = next(venv.glob("lib/python*/site-packages"))
    host_only = Path(f"/tmp/host-only-{uuid.uuid4().hex}")
    host_only.write_text("")
    try:
        out = _run_in(venv, "auto", IMPORTS, f"import os\nos.mkfifo({str(site)!r} + '/x')",
                      "import os\nprint(os.getuid(), sorted(os.listdir('/tmp')))")
    finally:
        host_only.unlink()
    assert out["stats"]["isolation"] == "full" and out["note"] is None, out
    imports, write, who = out["results"]
    assert imports["ok"] and imports["stdout"] == f"42 {site}/tmp_only_mod.py\n", imports
    # Bound back read-only: not even an unaudited mkfifo gets into the venv.
    assert not write["ok"] and "Read-only file system" in write["error"], write
    assert not (site / "x").exists()
    # /tmp is still private: the host's entries are gone but the paths to import dirs.
    uid, listing = who["stdout"].split(" ", 1)
    assert who["ok"] and uid == "65534" and host_only.name not in listing, who
    assert "'job'" in listing and repr(tmp_path.parts[2]) in listing, who


@needs_full
def test_a_fallback_is_clean_said_and_refused_when_full_is_required(tmp_path):
    venv = _venv(tmp_path, unreadable=True)
    out = _run_in(venv, "auto", IMPORTS, "import os\nprint(os.getuid())")
    st = out["stats"]
    assert st["isolation"] == "basic", st
    assert st["isolation_fallback"] == f"user 65534 cannot read {tmp_path}/closed"
    assert out["note"].startswith("basic isolation instead of full (user 65534 cannot read")
    assert "audit hooks" in out["note"]
    # The failed attempt at full left the worker untouched: /tmp is the host's, imports work.
    imports, who = out["results"]
    assert imports["ok"] and imports["stdout"].startswith("42 "), imports
    assert who["ok"] and who["stdout"] == "0\n"
    refused = _run_in(venv, "full", "print(1)")
    assert f"cannot read {tmp_path}/closed" in refused["stderr"]
