"""The Grafana dashboard of the rstar_* metrics: valid Grafana JSON whose every query names a
series a real Ray exports for the metrics the actors report (scraped from Ray's Prometheus
endpoint), and every metric the code exports is on some panel; ``rstar dashboard`` installs it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import REPO

DASHBOARD = REPO / "rstar" / "dashboards" / "rstar_grafana_dashboard.json"
SERIES = re.compile(r"\bray_rstar_\w+")

# Every metric of actors.metrics.SPECS given a value inside a Ray actor, then Ray's own metrics
# endpoint scraped until they all show up: the names Prometheus would store.
SCRAPE = r'''
import os, sys, time, urllib.request
os.environ["RAY_AUTH_MODE"] = "disabled"
import ray
port = int(sys.argv[1])
ray.init(_metrics_export_port=port, include_dashboard=False, num_cpus=1)
from actors import metrics

@ray.remote
class Reporter:
    def report(self):
        for name, (kind, _, tags) in metrics.SPECS.items():
            m, t = metrics.get(name), {k: "x" for k in tags} or None
            getattr(m, {"counter": "inc", "gauge": "set", "histogram": "observe"}[kind])(1, tags=t)

ray.get(Reporter.remote().report.remote())
names = set()
for _ in range(60):
    time.sleep(1)
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError:
        continue
    names = {ln.split("{")[0].split(" ")[0] for ln in text.splitlines()
             if ln.startswith("ray_rstar_")}
    if all(
            any(n.startswith(f"ray_rstar_{s}") for n in names) for s in metrics.SPECS):
        break
print("\n".join(sorted(names)))
ray.shutdown()
'''


def _queries(dash: dict) -> list[str]:
    return [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]


def test_dashboard_is_grafana_json_with_a_datasource_variable():
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] and dash["title"] and dash["schemaVersion"] >= 30
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)) >= 7
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for p in dash["panels"]:
        assert p["type"] == "timeseries" and p["datasource"]["uid"] == "${datasource}"
        assert {"h", "w", "x", "y"} <= set(p["gridPos"]) and p["targets"]
        for t in p["targets"]:
            assert t["refId"] and SERIES.search(t["expr"]), t
            assert 'SessionName=~"$SessionName"' in t["expr"], t["expr"]
            assert t["expr"].count("(") == t["expr"].count(")"), t["expr"]
    # Panels do not overlap on Grafana's 24-column grid.
    cells = set()
    for p in dash["panels"]:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"])
                for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & mine, p["title"]
        cells |= mine


def test_every_query_is_a_series_ray_exports_and_every_metric_is_shown(tmp_path):
    import socket

    from actors import metrics

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_AUTH_MODE": "disabled"}
    p = subprocess.run([sys.executable, "-c", SCRAPE, str(port)], capture_output=True,
                       text=True, env=env, timeout=240, cwd=tmp_path)
    exported = set(p.stdout.split())
    assert exported, p.stderr[-3000:]
    queried = {m for q in _queries(json.loads(DASHBOARD.read_text())) for m in SERIES.findall(q)}
    assert queried <= exported, sorted(queried - exported)
    for name in metrics.SPECS:
        assert any(q.startswith(f"ray_rstar_{name}") for q in queried), name


def test_rstar_dashboard_installs_it(tmp_path):
    rstar = str(Path(sys.executable).parent / "rstar")
    p = subprocess.run([rstar, "dashboard", "--out", tmp_path], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert json.loads((tmp_path / DASHBOARD.name).read_text()) == json.loads(DASHBOARD.read_text())
    p = subprocess.run([rstar, "dashboard", "--out", tmp_path / "nope"], capture_output=True,
                       text=True)
    assert p.returncode == 2 and "is not a directory" in p.stderr
