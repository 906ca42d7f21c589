"""Config loading: YAML + overrides, strict keys and types, every shipped config loads."""

import dataclasses
import fnmatch
import tomllib
from dataclasses import asdict
from pathlib import Path

import pytest
import yaml

import dualvad
from dualvad.config import (
    DEMO_PROFILE,
    ConfigError,
    DualVADConfig,
    SampleConfig,
    config_hash,
    load_config,
    setting_choices,
    setting_default,
)
from dualvad.errors import SettingError

ROOT = Path(__file__).parent.parent
#: Every shipped config: the repository's examples and the demo profile (package data).
CONFIGS = [*sorted((ROOT / "configs").glob("*.yaml")), DEMO_PROFILE]


def test_defaults_without_file():
    config = load_config()
    assert config == DualVADConfig()
    assert config.ingest.segments == 32


def test_the_demo_profile_changes_only_its_own_keys_from_the_embedded_defaults():
    """The profile holds the demo's settings once: each key it names differs from its embedded default (none
    is a restated default), and every other key keeps the default."""
    profile = yaml.safe_load(DEMO_PROFILE.read_text())
    named = {f"{section}.{key}" for section, values in profile.items() for key in values}
    assert named == {"synth.videos", "synth.seconds", "synth.test_share", "ingest.segments", "finetune.model",
                     "finetune.micro_batch", "finetune.lr", "finetune.warmup_steps", "finetune.max_steps",
                     "finetune.report_every"}
    demo, defaults = asdict(load_config(DEMO_PROFILE)), asdict(DualVADConfig())
    assert (demo["finetune"]["model"], demo["synth"]["videos"], demo["finetune"]["lr"]) == ("small", 320,
                                                                                           3e-4)
    for section, values in demo.items():
        if isinstance(values, dict):
            for key, value in values.items():
                name = f"{section}.{key}"
                assert (value != defaults[section][key]) == (name in named), name


def test_the_demo_profile_ships_as_package_data():
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    inside = DEMO_PROFILE.relative_to(Path(dualvad.__file__).parent).as_posix()
    assert any(fnmatch.fnmatch(inside, pattern) for pattern in patterns["dualvad"])


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


# Each wrong value is refused at load, with the key and the bound or the valid choices.
BAD_VALUES = [
    (["sample.strategy=focussed"],
     "config key 'sample.strategy' must be one of 'focused', 'uniform', 'random', 'cdf', got 'focussed'"),
    (["sample.budget=-3"], "config key 'sample.budget' must be >= 1, got -3"),
    (["sample.tau=0"], "config key 'sample.tau' must be > 0, got 0.0"),
    (["sample.floor=-1"], "config key 'sample.floor' must be >= 0, got -1"),
    (["ingest.segments=0"], "config key 'ingest.segments' must be >= 1, got 0"),
    (["ingest.frames_per_segment=0"], "config key 'ingest.frames_per_segment' must be >= 1, got 0"),
    (["ingest.feature=foo"], "config key 'ingest.feature' must be one of 'motion', 'clip', got 'foo'"),
    (["scorer.kind=foo"], "config key 'scorer.kind' must be one of 'refinevad', 'mil', got 'foo'"),
    (["scorer.dropout=1.0"], "config key 'scorer.dropout' must be < 1, got 1.0"),
    (["scorer.hidden_dim=30"],
     "config key 'scorer.hidden_dim' must be divisible by transformer_heads (4), got 30"),
    (["eval.ablate=foo"],
     "config key 'eval.ablate' must be one of 'none', 'sampling', 'benchmarks', 'scorer', got 'foo'"),
    (["eval.split=val"], "config key 'eval.split' must be one of 'train', 'test', got 'val'"),
    (["eval.vera.neighbour_share=1.5"], "config key 'eval.vera.neighbour_share' must be <= 1, got 1.5"),
    (["eval.vera.sigma=0"], "config key 'eval.vera.sigma' must be > 0, got 0.0"),
    (["benchmarks.shards=0"], "config key 'benchmarks.shards' must be >= 1, got 0"),
    (["finetune.curriculum=video_first"],
     "config key 'finetune.curriculum' must be one of 'joint', 'image_first', got 'video_first'"),
    (["finetune.report_every=0"], "config key 'finetune.report_every' must be >= 1, got 0"),
    (["finetune.max_steps=-1"], "config key 'finetune.max_steps' must be >= 0, got -1"),
    (["finetune.zero_stage=4"], "config key 'finetune.zero_stage' must be <= 3, got 4"),
    (["finetune.lora_rank=-1"], "config key 'finetune.lora_rank' must be >= 0, got -1"),
    (["finetune.lora_rank=8", "finetune.lora_dropout=1.0"],
     "config key 'finetune.lora_dropout' must be < 1, got 1.0"),
    (["finetune.lora_rank=8", "finetune.lora_targets=[]"],
     "config key 'finetune.lora_targets' must name at least one Linear layer when lora_rank > 0, got []"),
    (["finetune.lora_rank=8", "finetune.zero_stage=3"],
     "config key 'finetune.zero_stage' must be <= 2 when lora_rank > 0 (the LoRA merge for the export "
     "needs whole parameters), got 3"),
    (["finetune.zero_stage=0", "finetune.offload=true"],
     "config key 'finetune.offload' cannot run: offload needs ZeRO stage 1, 2 or 3: stage 0 does not "
     "partition the optimizer state, so there is nothing to move to the CPU; set zero_stage to 2 (the "
     "default) or offload to false"),
    (["ray.num_cpus=0"], "config key 'ray.num_cpus' must be >= 1, got 0"),
    (["stages.max_failure_share=1.5"], "config key 'stages.max_failure_share' must be <= 1, got 1.5"),
    (["stages.flush_videos=0"], "config key 'stages.flush_videos' must be >= 1, got 0"),
    (["synth.width=33"], "config key 'synth.width' must be a multiple of 2, got 33"),
    (["synth.seconds=0.5"],
     "config key 'synth.seconds' must give fps * seconds >= 10 frames (fps 15), got 0.5"),
]


@pytest.mark.parametrize(("overrides", "message"), BAD_VALUES, ids=[" ".join(o) for o, _ in BAD_VALUES])
def test_a_value_out_of_range_or_not_among_the_choices_is_an_error_at_load(overrides, message):
    with pytest.raises(ConfigError) as error:
        load_config(None, overrides)
    assert str(error.value) == message


def test_the_same_rules_hold_in_a_yaml_file(tmp_path):
    file = tmp_path / "c.yaml"
    file.write_text("sample:\n  strategy: cdf\n  budget: 0\n")
    with pytest.raises(ConfigError) as error:
        load_config(file)
    assert str(error.value) == "config key 'sample.budget' must be >= 1, got 0"


def test_values_on_the_bounds_load():
    config = load_config(None, ["sample.budget=1", "sample.floor=0", "ingest.segments=1",
                                "finetune.lora_rank=0", "finetune.zero_stage=3", "eval.ablate=benchmarks",
                                "ingest.workers=null", "scorer.kind=mil"])
    assert (config.sample.budget, config.sample.floor, config.ingest.segments) == (1, 0, 1)
    assert (config.finetune.zero_stage, config.eval.ablate, config.scorer.kind) == (3, "benchmarks", "mil")
    assert config.ingest.workers is None


def test_malformed_yaml_is_a_config_error_that_names_the_file_and_line(tmp_path, capsys):
    from dualvad.cli import main

    file = tmp_path / "broken.yaml"
    file.write_text("ingest:\n  segments: 8\n  stride: [1, 2\n")
    with pytest.raises(ConfigError, match=rf"config file {file} is not valid YAML \(line 4"):
        load_config(file)
    assert main(["config", "--config", str(file)]) == 2
    assert f"config file {file} is not valid YAML" in capsys.readouterr().err


def test_a_malformed_override_value_is_a_config_error():
    with pytest.raises(ConfigError, match=r"override 'ingest.segments=\[8': the value is not valid YAML"):
        load_config(None, ["ingest.segments=[8"])


# The sections are pydantic dataclasses (dualvad.validation): the same rules and words wherever one is built.
def test_a_range_violation_is_the_same_setting_error_at_load_in_construction_and_in_replace():
    with pytest.raises(SettingError) as loaded:
        load_config(None, ["sample.budget=-3"])
    assert (str(loaded.value), loaded.value.key) == ("config key 'sample.budget' must be >= 1, got -3",
                                                     "sample.budget")
    with pytest.raises(SettingError) as built:
        SampleConfig(budget=-3)
    assert str(built.value) == "config key 'budget' must be >= 1, got -3"
    with pytest.raises(SettingError) as replaced:
        dataclasses.replace(load_config().sample, budget=-3)
    assert str(replaced.value) == "config key 'budget' must be >= 1, got -3"
    assert isinstance(replaced.value, ValueError)


def test_an_int_is_a_float_but_a_bool_or_a_string_is_never_a_number():
    assert load_config(None, ["sample.tau=1"]).sample.tau == 1.0
    assert isinstance(load_config(None, ["sample.tau=1"]).sample.tau, float)
    assert isinstance(SampleConfig(tau=1).tau, float)
    wrong = [("sample.budget=true", "config key 'sample.budget' expects int, got bool True"),
             ("sample.tau=false", "config key 'sample.tau' expects float, got bool False"),
             ("sample.budget='3'", "config key 'sample.budget' expects int, got str '3'"),
             ("sample.tau='0.5'", "config key 'sample.tau' expects float, got str '0.5'"),
             ("sample.budget=2.0", "config key 'sample.budget' expects int, got float 2.0"),
             ("sample.budget=null", "config key 'sample.budget' expects int, got NoneType None"),
             ("ingest.use_gpu=1",
              "unknown config key 'ingest.use_gpu'; valid keys under ingest: categories, clip_model, "
              "cpus_per_worker, decode_height, decode_threads, decode_width, decode_window_s, feature, "
              "features, features_fps, features_layout, features_snippets, frames_per_segment, max_pixels, "
              "segments, snap_to_keyframes, workers"),
             ("ingest.snap_to_keyframes=1", "config key 'ingest.snap_to_keyframes' expects bool, got int 1"),
             ("finetune.lora_targets=[q_proj, 1]",
              "config key 'finetune.lora_targets[1]' expects str, got int 1"),
             ("ingest=3", "config key 'ingest' expects a mapping, got int 3")]
    for override, message in wrong:
        with pytest.raises(ConfigError) as error:
            load_config(None, [override])
        assert str(error.value) == message
    with pytest.raises(SettingError, match="config key 'budget' expects int, got bool True"):
        SampleConfig(budget=True)
    assert load_config(None, ["ingest.workers=null"]).ingest.workers is None  # None where the type allows it


def test_exponent_notation_is_a_float_in_files_and_overrides(tmp_path):
    # PyYAML follows YAML 1.1, where 1e-3 (no dot) is a string; the config reads it as YAML 1.2 does
    file = tmp_path / "c.yaml"
    file.write_text("scorer:\n  lr: 3e-4\n  weight_decay: 1E-5\n")
    config = load_config(file, ["sample.tau=2.5e-1", "stages.max_failure_share=+1e0", "run=runs/1e3x"])
    assert (config.scorer.lr, config.scorer.weight_decay, config.sample.tau) == (3e-4, 1e-5, 0.25)
    assert config.stages.max_failure_share == 1.0 and config.run == "runs/1e3x"
    with pytest.raises(ConfigError, match="expects float, got str '1e-3'"):
        load_config(None, ["scorer.lr='1e-3'"])  # quoted: still a string


def test_a_yaml_value_json_has_no_type_for_is_refused():
    with pytest.raises(ConfigError, match=r"config value datetime.date\(2026, 12, 6\) is a YAML date"):
        load_config(None, ["run=2026-12-06"])


def test_the_choices_and_defaults_are_read_from_the_sections():
    assert setting_choices("sample.strategy") == ("focused", "uniform", "random", "cdf")
    assert setting_choices("finetune.tracking") == ("none", "tensorboard")
    assert setting_choices("eval.split") is None and setting_choices("ray.num_cpus") is None
    assert (setting_default("sample.budget"), setting_default("eval.vera.sigma")) == (16, 10.0)
