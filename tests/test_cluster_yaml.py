"""cluster.yaml is a valid Ray autoscaler config (Ray's own schema and validator)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import yaml

from conftest import REPO


def load():
    return yaml.safe_load((REPO / "cluster.yaml").read_text())


def test_matches_rays_schema():
    import ray.autoscaler

    schema_path = Path(ray.autoscaler.__file__).parent / "ray-schema.json"
    jsonschema.validate(load(), json.loads(schema_path.read_text()))


def test_passes_rays_validator_after_defaults():
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(load()))


def test_has_the_node_types_the_design_needs():
    cfg = load()
    types = cfg["available_node_types"]
    assert cfg["head_node_type"] in types
    gpu = [t for t in types.values() if t["node_config"]["InstanceType"].startswith(("g", "p"))]
    cpu = [t for t in types.values() if t["node_config"]["InstanceType"].startswith("c")]
    assert gpu and cpu, "a GPU worker type for servers and a CPU one for search and sandboxes"
    for t in gpu + cpu:
        assert 0 <= t["min_workers"] <= t["max_workers"]
    assert cfg["idle_timeout_minutes"] > 0
    assert any(".[vllm]" in c for c in cfg["setup_commands"])
    starts = cfg["head_start_ray_commands"] + cfg["worker_start_ray_commands"]
    assert all("RAY_AUTH_MODE" in c for c in starts if c.strip().startswith(("RAY_", "ray start")))
