"""Every key of the Serve configs is a field of Ray's serve schema (which ignores unknown keys silently) or
of :class:`AppArgs`, and both configs validate; no Ray instance needed."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel
from ray.serve.config import AutoscalingConfig
from ray.serve.schema import ServeDeploySchema

from dualvad.serve.settings import AppArgs

ROOT = Path(__file__).parent.parent.parent
CONFIGS = [ROOT / "serve_config.yaml", ROOT / "configs" / "serve" / "cluster.yaml"]
# fields typed as a plain dict that Ray validates as a model later
DICT_FIELDS = {"autoscaling_config": AutoscalingConfig, "args": AppArgs}


def _models(annotation: typing.Any) -> list[type[BaseModel]]:
    """The pydantic models inside an annotation (Optional[...], list[...], Union[dict, Model] ...)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in typing.get_args(annotation) for model in _models(arg)]


def unknown_keys(model: type[BaseModel], value: typing.Any, where: str) -> list[str]:
    """Dotted paths of the keys in ``value`` that ``model`` has no field (or alias) for, recursively."""
    if isinstance(value, list):
        return [key for i, item in enumerate(value) for key in unknown_keys(model, item, f"{where}[{i}]")]
    if not isinstance(value, dict):
        return []
    fields = model.model_fields
    names = {name: field for name, field in fields.items()} | {
        field.alias: field for field in fields.values() if field.alias}
    found = []
    for key, item in value.items():
        if key not in names:
            found.append(f"{where}.{key}")
            continue
        nested = [DICT_FIELDS[key]] if key in DICT_FIELDS else _models(names[key].annotation)
        if nested:
            found += unknown_keys(nested[0], item, f"{where}.{key}")
    return found


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_key_is_a_schema_field_and_the_config_validates(path: Path):
    config = yaml.safe_load(path.read_text())
    assert unknown_keys(ServeDeploySchema, config, path.name) == []
    ServeDeploySchema.model_validate(config)
    for app in config["applications"]:
        AppArgs.model_validate(app["args"])
        assert {d["name"] for d in app["deployments"]} == {"Api", "Analyzer", "Judge", "Streams"}
        by_name = {d["name"]: d for d in app["deployments"]}
        for name in ("Analyzer", "Judge"):
            assert "autoscaling_config" in by_name[name] and "max_queued_requests" in by_name[name]
        AutoscalingConfig.model_validate(by_name["Analyzer"]["autoscaling_config"])
        policy = AutoscalingConfig.model_validate(by_name["Streams"]["autoscaling_config"]).policy
        assert policy.policy_function == "dualvad.serve.streams:streams_policy"


def test_the_checker_finds_misspelt_keys():
    config = {"http_options": {"request_timeout": 5}, "applications": [{
        "import_path": "x:y", "args": {"run": "r", "max_upload": 1},
        "deployments": [{"name": "Judge", "autoscaling_config": {"max_replica": 2},
                         "ray_actor_options": {"num_gpu": 1}}]}]}
    assert sorted(unknown_keys(ServeDeploySchema, config, "c")) == sorted([
        "c.http_options.request_timeout", "c.applications[0].args.max_upload",
        "c.applications[0].deployments[0].autoscaling_config.max_replica",
        "c.applications[0].deployments[0].ray_actor_options.num_gpu"])


def test_gpus_only_in_the_cluster_variant():
    local, cluster = (yaml.safe_load(p.read_text()) for p in CONFIGS)

    def judge(config):
        return next(d for d in config["applications"][0]["deployments"] if d["name"] == "Judge")

    assert judge(local)["ray_actor_options"]["num_gpus"] == 0
    assert judge(cluster)["ray_actor_options"]["num_gpus"] == 1
