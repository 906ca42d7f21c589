"""Dataclass configs: YAML files plus ``key.sub=value`` overrides, loaded strictly.

Every stage reads one :class:`DualVADConfig`, which composes the components' own configs (each defined
once, beside its code: ``dualvad.scorer.config``, ``dualvad.video.sampling`` ...) and adds only the run
and corpus paths and :class:`RayConfig`. Their defaults are the embedded configuration (``dualvad config``
prints it; ``dualvad demo`` reads :data:`DEMO_PROFILE` over it). A YAML file overrides the
defaults, and ``key.sub=value`` strings override the file. Everything is checked at load, by pydantic
(each section is a strict pydantic dataclass, :mod:`dualvad.validation`): unknown keys, values of the wrong
type, an enumerated value that is not one of its ``Literal`` choices and a value outside its range are
errors that name the key and the valid keys, choices or bound: a typo never silently falls back to a
default, and a bad value never reaches Ray.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import field
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import Field, TypeAdapter, ValidationError

# Each section is its component's own config, defined beside its code; this module only composes them.
from dualvad.benchmarks.config import BenchmarksConfig
from dualvad.corpus.synth_plan import SynthSpec
from dualvad.errors import ConfigError
from dualvad.eval.config import EvalConfig, VeraSettings
from dualvad.scorer.config import ScoreConfig, ScorerConfig
from dualvad.stages.config import StagesConfig
from dualvad.stream.config import StreamConfig
from dualvad.validation import choices_of, config_error, config_section, field_type
from dualvad.video.config import IngestConfig
from dualvad.video.sampling import SampleConfig
from dualvad.vlm.finetune_config import FinetuneConfig

__all__ = [
    "BenchmarksConfig", "ConfigError", "DualVADConfig", "EvalConfig", "FinetuneConfig", "IngestConfig",
    "RayConfig", "SampleConfig", "ScoreConfig", "ScorerConfig", "StagesConfig", "StreamConfig", "SynthSpec",
    "VeraSettings",
    "config_hash", "config_to_dict", "config_yaml", "load_config", "setting_choices", "setting_default",
]


@config_section
class RayConfig:
    """How to reach Ray: ``address=None`` starts a local instance."""

    address: str | None = None
    num_cpus: Annotated[int, Field(ge=1)] | None = None  # local instance only; None = all cores
    dashboard: bool = False  # local instance only: start Ray's dashboard (its address is printed)


#: Where ``dualvad demo`` writes its run, and the run ``detect`` and ``serve`` use when given none.
DEMO_RUN = "runs/demo"

#: The demo profile (package data): the keys ``dualvad demo`` changes from the embedded defaults, each with
#: why. ``dualvad demo`` reads it as its config file; a ``--config`` file replaces it, overrides change it.
DEMO_PROFILE = Path(__file__).parent / "profiles" / "demo.yaml"


@config_section
class DualVADConfig:
    """The whole system's configuration; each stage reads its own section."""

    run: str = DEMO_RUN  # run directory: local path or pyarrow filesystem URI
    corpus: str = ""  # corpus folder (videos/ + annotations/)
    synth: SynthSpec = field(default_factory=SynthSpec)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    scorer: ScorerConfig = field(default_factory=ScorerConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    benchmarks: BenchmarksConfig = field(default_factory=BenchmarksConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    stages: StagesConfig = field(default_factory=StagesConfig)
    stream: StreamConfig = field(default_factory=StreamConfig)


# Validates a whole raw config in pydantic's JSON mode: there a strict section accepts a mapping (in Python
# mode strictness would demand a section instance), and YAML's values are JSON's.
_LOADER = TypeAdapter(DualVADConfig)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> DualVADConfig:
    """Build a config from the defaults, an optional YAML file and ``key.sub=value`` overrides.

    Raises:
        ConfigError: unknown key, wrong type, a value not among its choices or out of range, or a
            malformed override; the message names the key and lists the valid keys, choices or bound.
    """
    raw: dict[str, Any] = {}
    if path is not None:
        raw = _read_yaml(Path(path))
    for override in overrides or []:
        _apply_override(raw, override)
    try:
        return _LOADER.validate_json(json.dumps(raw, default=_not_json))
    except ValidationError as error:
        raise config_error(error, DualVADConfig) from None


def config_to_dict(config: Any) -> dict[str, Any]:
    """The config as plain nested dicts (YAML/JSON-ready)."""
    return dataclasses.asdict(config)


def config_hash(config: Any) -> str:
    """A short, stable hash of a config (hex, 12 chars): the same values give the same hash."""
    canonical = json.dumps(config_to_dict(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def config_yaml(config: Any) -> str:
    """The config as YAML, in field order; :func:`load_config` reads it back to an equal config."""
    return yaml.safe_dump(config_to_dict(config), sort_keys=False)


def setting_default(key: str, config: DualVADConfig | None = None) -> Any:
    """The embedded default of config key ``key`` (``sample.budget``), or its value in ``config``."""
    node: Any = DualVADConfig() if config is None else config
    for part in key.split("."):
        node = getattr(node, part)
    return node


def setting_choices(key: str) -> tuple[Any, ...] | None:
    """The values an enumerated (``Literal``) config key allows, ``None`` for any other key."""
    return choices_of(field_type(DualVADConfig, key))


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, reading ``1e-3`` as a float as YAML 1.2 does (YAML 1.1, which PyYAML follows,
    needs a dot, ``1.0e-3``, and reads ``1e-3`` as a string)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


def _yaml_value(text: str) -> Any:
    """One YAML document parsed by :class:`_Loader`."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; pass a YAML file from configs/")
    try:
        data = _yaml_value(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML ({_yaml_problem(error)}); fix it or start "
                          "from a file in configs/") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at top level, got {type(data).__name__}")
    return data


def _apply_override(raw: dict[str, Any], override: str) -> None:
    """Set ``a.b.c=value`` inside ``raw``; the value is parsed as YAML (``32``, ``null``, ``[1, 2]``)."""
    key, sep, text = override.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {override!r} is not of the form key.sub=value")
    parts = key.strip().split(".")
    node = raw
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {override!r}: {part!r} is a value, not a section")
        node = child
    try:
        node[parts[-1]] = _yaml_value(text) if text.strip() else ""
    except yaml.YAMLError as error:
        raise ConfigError(f"override {override!r}: the value is not valid YAML ({_yaml_problem(error)}); "
                          "quote a string, write a list as [1, 2]") from None


def _yaml_problem(error: yaml.YAMLError) -> str:
    """PyYAML's reason in one line, with the 1-based line and column where it has them."""
    mark = getattr(error, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return where + (getattr(error, "problem", None) or str(error).splitlines()[0])


def _not_json(value: Any) -> Any:
    """Refuse a YAML value JSON has no type for (a date): no config key takes one."""
    raise ConfigError(f"config value {value!r} is a YAML {type(value).__name__}, which no config key takes; "
                      "quote it if you meant a string")
