"""Config loading: YAML + overrides, strict keys and types, every shipped config loads."""

from dataclasses import asdict
from pathlib import Path

import pytest
import yaml

from dualvad.config import ConfigError, DualVADConfig, config_hash, load_config

CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("*.yaml"))


def test_defaults_without_file():
    config = load_config()
    assert config == DualVADConfig()
    assert config.ingest.segments == 32


def test_demo_yaml_equals_embedded_defaults():
    demo = yaml.safe_load((Path(__file__).parent.parent / "configs" / "demo.yaml").read_text())
    assert demo == asdict(DualVADConfig())


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_loads_and_opens_with_its_command(path):
    load_config(path)
    first_lines = path.read_text().splitlines()[:4]
    assert any("dualvad" in line or "ray job submit" in line for line in first_lines)


def test_overrides_parse_yaml_values(tmp_path):
    file = tmp_path / "c.yaml"
    file.write_text("ingest:\n  segments: 16\n")
    config = load_config(file, ["ingest.segments=8", "ingest.workers=3", "ray.num_cpus=null",
                                "stages.max_failure_share=1", "run=s3://b/r"])
    assert config.ingest.segments == 8
    assert config.ingest.workers == 3
    assert config.ray.num_cpus is None
    assert config.stages.max_failure_share == 1.0 and isinstance(config.stages.max_failure_share, float)
    assert config.run == "s3://b/r"


def test_unknown_key_names_it_and_lists_valid_ones():
    with pytest.raises(ConfigError) as error:
        load_config(None, ["ingest.segmnts=8"])
    message = str(error.value)
    assert "ingest.segmnts" in message and "segments" in message and "frames_per_segment" in message


def test_unknown_top_level_key(tmp_path):
    file = tmp_path / "c.yaml"
    file.write_text("ingst:\n  segments: 16\n")
    with pytest.raises(ConfigError, match="'ingst'.*valid keys under the top level"):
        load_config(file)


@pytest.mark.parametrize("override", ["ingest.segments=many", "ingest.segments=2.5",
                                      "ingest.segments=true", "synth.seconds=fast",
                                      "ingest=3"])
def test_wrong_types_are_errors(override):
    with pytest.raises(ConfigError, match=override.split("=")[0].replace(".", r"\.")):
        load_config(None, [override])


def test_malformed_override():
    with pytest.raises(ConfigError, match="key.sub=value"):
        load_config(None, ["segments"])


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_hash_is_stable_and_value_sensitive():
    assert config_hash(load_config()) == config_hash(load_config())
    assert config_hash(load_config()) != config_hash(load_config(None, ["ingest.segments=8"]))


def test_a_section_that_validates_itself_reports_a_config_error():
    with pytest.raises(ConfigError, match=r"synth: .*width x height = 33 x 120 must be even"):
        load_config(None, ["synth.width=33"])
