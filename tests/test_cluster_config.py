"""The cluster launcher configs (``cluster.yaml`` for AWS, ``configs/clusters/*.yaml``) against the schema
that ``ray up`` validates with (``ray/autoscaler/ray-schema.json`` inside the installed ray), and the
properties docs/cluster.md promises: a head that schedules only, every GPU type scaling from zero, the
project installed on every node, and the stage configs sized for those nodes."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml

from dualvad.config import load_config

ROOT = Path(__file__).resolve().parent.parent
LAUNCHER_CONFIGS = [ROOT / "cluster.yaml", *sorted((ROOT / "configs" / "clusters").glob("*.yaml"))]
SCHEMA = Path(ray.__file__).parent / "autoscaler" / "ray-schema.json"
GPU_INSTANCES = {"aws": ("g4dn", "g5", "g6", "p3", "p4d", "p4de", "p5"), "gcp": ()}


def _gpu_types(config: dict) -> dict[str, dict]:
    """Node types with GPUs: an AWS GPU instance family, or GCP guestAccelerators."""
    provider = config["provider"]["type"]
    found = {}
    for name, node in config["available_node_types"].items():
        node_config = node["node_config"]
        family = str(node_config.get("InstanceType", "")).split(".")[0]
        if family in GPU_INSTANCES.get(provider, ()) or node_config.get("guestAccelerators") \
                or node.get("resources", {}).get("GPU"):
            found[name] = node
    return found


@pytest.mark.parametrize("path", LAUNCHER_CONFIGS, ids=lambda p: p.name)
def test_launcher_config_validates_against_rays_schema(path):
    config = yaml.safe_load(path.read_text())
    jsonschema.validate(config, json.loads(SCHEMA.read_text()))  # as ray up does
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"].get("CPU") == 0, "the head schedules; stage work runs on workers"
    gpus = _gpu_types(config)
    assert len(gpus) >= 2, f"{path.name}: a judge/eval GPU type and a fine-tuning GPU type"
    for name, node in gpus.items():
        assert node.get("min_workers", 0) == 0, f"{path.name}: GPU type {name} must scale from zero"
    cpu_workers = [n for n, t in types.items() if n != config["head_node_type"] and n not in gpus]
    assert cpu_workers and all(types[n]["max_workers"] > types[n].get("min_workers", 0) for n in cpu_workers)
    assert sum(t.get("max_workers", 0) for n, t in types.items() if n != config["head_node_type"]) \
        <= config["max_workers"]
    assert config["idle_timeout_minutes"] > 0
    assert any("pip install" in command and "dualvad" in command for command in config["setup_commands"])
    assert config["docker"]["image"].endswith("-gpu") or "cu" in config["docker"]["image"]


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("cluster*.yaml")), ids=lambda p: p.name)
def test_stage_configs_for_the_cluster_load_and_use_its_gpus(path):
    config = load_config(path, [])
    assert config.ray.address == "auto" and config.run.startswith("s3://") and config.corpus.startswith("s3://")
    assert config.finetune.use_gpu and config.eval.use_gpu
