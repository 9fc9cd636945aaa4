"""``rstar show-tree`` in a real browser: Debian's headless Chromium, driven over the DevTools
protocol, loads the page, counts the tree's nodes and the highlighted chosen paths as rendered,
reads the highlight's computed style, takes a screenshot, and reports console errors (none
allowed). Skipped where Chromium is not installed (``apt-get install chromium``; CI does)."""

from __future__ import annotations

import base64
import itertools
import json
import re
import shutil
import struct
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium (apt-get install chromium)")
RSTAR = str(Path(sys.executable).parent / "rstar")


class Page:
    """One tab over the DevTools protocol; console errors and exceptions are collected."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.errors: list[str] = []
        self.events: list[str] = []
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable")

    def call(self, method: str, **params):
        i = next(self.ids)
        self.ws.send(json.dumps({"id": i, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=60))
            if msg.get("id") == i:
                assert "error" not in msg, msg
                return msg.get("result", {})
            self._event(msg)

    def _event(self, msg: dict) -> None:
        method, p = msg.get("method", ""), msg.get("params", {})
        self.events.append(method)
        if method == "Runtime.exceptionThrown":
            self.errors.append(p["exceptionDetails"].get("text", "exception"))
        elif method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            self.errors.append(" ".join(str(a.get("value")) for a in p.get("args", [])))
        elif method == "Log.entryAdded" and p["entry"].get("level") == "error":
            self.errors.append(p["entry"].get("text", ""))

    def wait_for(self, event: str) -> None:
        while event not in self.events:
            self._event(json.loads(self.ws.recv(timeout=60)))

    def js(self, expr: str):
        out = self.call("Runtime.evaluate", expression=expr, returnByValue=True)
        assert "exceptionDetails" not in out, out
        return out["result"]["value"]


@pytest.fixture()
def browser(tmp_path):
    proc = subprocess.Popen(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,900",
         "--remote-debugging-port=0", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline, port = time.time() + 60, None
        while port is None and time.time() < deadline:
            line = proc.stderr.readline()
            m = re.search(r"DevTools listening on ws://[^:]+:(\d+)/", line)
            port = m and int(m.group(1))
            assert line or proc.poll() is None, "chromium exited"
        assert port, "chromium never said where DevTools listens"
        yield port
    finally:
        proc.kill()
        proc.wait()


def test_show_tree_page_renders_the_tree_and_its_chosen_paths(tmp_path, browser):
    from rstar import shards
    from rstar.show_tree import find_tree
    from tree.extract import sft_examples

    shard_dir = tmp_path / "shards"
    p = subprocess.run([RSTAR, "search", "--problems", "6", "--rollouts", "8", "--candidates",
                        "3", "--seed", "3", "--out", shard_dir / "trees.parquet", "--quiet"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    ids = sorted({r["problem_id"] for r in shards.read_table(shard_dir, ["problem_id"]).to_pylist()})
    tree = next(t for t in (find_tree(shard_dir, i) for i in ids) if sft_examples(t))
    chosen = {n.id for e in sft_examples(tree) for n in tree.nodes[e["node_id"]].path()
              if n.parent is not None}
    page_file = tmp_path / "tree.html"
    p = subprocess.run([RSTAR, "show-tree", "--shards", shard_dir, "--problem", tree.problem_id,
                        "--out", page_file], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr

    (target,) = [t for t in json.load(urllib.request.urlopen(
        f"http://127.0.0.1:{browser}/json/list", timeout=10)) if t["type"] == "page"]
    from websockets.sync.client import connect

    with connect(target["webSocketDebuggerUrl"], max_size=None) as ws:
        _check_page(Page(ws), page_file, tree, chosen, tmp_path)


def _check_page(page: Page, page_file: Path, tree, chosen: set[int], tmp_path: Path) -> None:
    page.call("Page.navigate", url=page_file.as_uri())
    page.wait_for("Page.loadEventFired")
    # Every node of the tree (the root is the question) is one rendered <details>.
    assert page.js("document.querySelectorAll('details').length") == len(tree.nodes) - 1
    text = page.js("document.body.innerText")
    assert f"{len(tree.nodes) - 1} nodes" in text and tree.problem_id in text
    # The highlighted summaries are exactly the chosen (SFT) paths' nodes, drawn with an outline.
    best = page.js("[...document.querySelectorAll('summary.best')].map(s => s.innerText)")
    assert {int(re.match(r"#(\d+)", s).group(1)) for s in best} == chosen
    style = page.js("getComputedStyle(document.querySelector('summary.best')).outlineStyle")
    assert style == "solid"
    assert page.js("document.querySelectorAll('.tag.ok').length") >= 1   # a correct terminal
    shot = base64.b64decode(page.call("Page.captureScreenshot", format="png")["data"])
    (tmp_path / "tree.png").write_bytes(shot)
    assert shot[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", shot[16:24])
    assert width >= 800 and height >= 600 and len(shot) > 20_000   # drawn, not a blank page
    assert page.errors == [], page.errors
