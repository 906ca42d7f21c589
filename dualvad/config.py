"""Dataclass configs: YAML files plus ``key.sub=value`` overrides, loaded strictly.

Every stage reads one :class:`DualVADConfig`. Defaults live here (the embedded demo
configuration; ``configs/demo.yaml`` spells them out and a test keeps the two equal). A
YAML file overrides the defaults, and ``key.sub=value`` strings override the file. Unknown
keys and values of the wrong type are errors that name the key and list the valid ones:
a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import yaml

# The synthetic corpus section is the generator's own spec (one definition of those fields).
from dualvad.corpus.synthetic import SynthSpec as SynthConfig
from dualvad.stages import StagesConfig


class ConfigError(ValueError):
    """A config file or override that does not match the schema."""


@dataclass
class IngestConfig:
    """Decoding videos into K segments with one feature vector each."""

    segments: int = 32  # K, the WSVAD convention
    frames_per_segment: int = 8  # frames decoded per segment to compute its feature
    feature: str = "motion"  # "motion" (no weights needed) or "clip" (a transformers encoder)
    decode_width: int = 64  # frames are resized while decoding (motion feature); pixels
    decode_height: int = 48
    clip_model: str = "openai/clip-vit-base-patch16"  # id or local path, for feature=clip
    workers: int | None = None  # actor pool size; None = up to one per CPU
    cpus_per_worker: float = 1.0
    decode_threads: int = 1  # decord decoding threads per worker
    snap_to_keyframes: bool = True  # anchor sampled frames on keyframes where a sub-interval has one


@dataclass
class ScorerConfig:
    """The weakly supervised segment scorer (RefineVAD or the MIL baseline) and its training."""

    kind: str = "refinevad"  # "refinevad" or "mil" (Sultani et al. 2018 baseline)
    hidden_dim: int = 128
    use_motar: bool = True  # ablation switches (RefineVAD only)
    use_core: bool = True
    dropout: float = 0.1
    # Not in the paper (ours): gates on the Transformer/CORE context that start small, and
    # dropping the whole context branch for a share of training videos. Both keep the model from
    # scoring every segment of an anomalous video high; 1.0 and 0.0 give the plain model.
    context_scale_init: float = 0.1
    context_drop: float = 0.8
    # Also ours: each context branch minus its mean over the video's segments, so context can shift
    # segments against each other but not raise a whole video (see dualvad.scorer.refinevad).
    centre_context: bool = True
    epochs: int = 40
    batch_size: int = 16  # videos per step per worker
    lr: float = 1e-3
    weight_decay: float = 1e-4
    topk: int = 3  # k of the top-k MIL loss
    category_weight: float = 0.5
    smoothness_weight: float = 8e-4
    sparsity_weight: float = 8e-3
    val_share: float = 0.2  # share of training videos held out to pick the best checkpoint
    report_every: int = 5  # epochs between reports + checkpoints (the best one is kept)
    seed: int = 0
    workers: int = 1  # Ray Train workers
    cpus_per_worker: float = 1.0
    score_workers: int | None = None  # scoring actor pool size; None = up to one per CPU


@dataclass
class SampleConfig:
    """How many frames to take from each video, and where."""

    strategy: str = "focused"  # focused | uniform | random | cdf
    budget: int = 16  # N frames per video
    tau: float = 0.1  # softmax temperature (focused)
    floor: int = 1  # m, coverage frames per segment (focused)
    cdf_offset: float = 0.1  # density offset (cdf)
    seed: int = 0  # random strategy


@dataclass
class BenchmarksConfig:
    """The image and video benchmarks built from the sampled frames."""

    image_size: int = 448  # longer side of stored frames, px (InternVL's tile size)
    jpeg_quality: int = 90
    clip_frames: int = 8  # k frames per video-benchmark clip
    shards: int = 4  # Parquet shards per benchmark
    pseudo_threshold: float = 0.5  # scorer score from which an unannotated frame counts as anomalous
    seed: int = 0  # chooses question paraphrases
    decode_threads: int = 1


@dataclass
class FinetuneConfig:
    """Fine-tuning the VLM on the train split of both benchmarks (Ray Train + DeepSpeed)."""

    model: str = "tiny"  # "tiny" (a random tiny InternVL, for tests/demo) or a hub id / folder
    workers: int = 2  # Ray Train workers (data-parallel ranks)
    cpus_per_worker: float = 0.5
    use_gpu: bool = False  # one GPU per worker, bf16; CPU runs are fp32 on gloo
    zero_stage: int = 2  # DeepSpeed ZeRO stage (0-3)
    offload: bool = False  # offload the optimizer state (and params at stage 3) to CPU
    micro_batch: int = 1  # rows per forward pass per worker
    grad_accum: int = 1  # micro-batches per optimizer step
    lr: float = 1e-4
    weight_decay: float = 0.0
    warmup_steps: int = 1  # optimizer steps of linear warmup; 0 = a constant lr (no warmup, no decay)
    max_steps: int = 4  # optimizer steps in all; 0 = ``epochs`` passes over the mixed benchmarks
    epochs: int = 1  # used when max_steps = 0
    image_weight: float = 1.0  # draws per epoch = round(weight * rows) per benchmark
    video_weight: float = 1.0
    curriculum: str = "joint"  # "joint" or "image_first"
    max_length: int = 1024  # tokens per row; a longer row is an error
    grad_clip: float = 1.0
    gradient_checkpointing: bool = False
    freeze_vision: bool = False
    freeze_projector: bool = False
    # LoRA (peft) on the language model: rank 0 = full fine-tuning. With LoRA the language model's own
    # weights are frozen; freeze_vision / freeze_projector still decide whether those parts train fully.
    lora_rank: int = 0
    lora_alpha: float = 16.0  # the adapters' output is scaled by lora_alpha / lora_rank
    lora_dropout: float = 0.05  # dropout on each adapter's input
    lora_targets: list[str] = field(default_factory=lambda: [  # Linear layers of the language model
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    report_every: int = 4  # optimizer steps between reports + checkpoints (and after the last)
    # False (throughput runs): reports carry only the step log; no DeepSpeed state (no resume) and no export
    save_checkpoints: bool = True
    seed: int = 0


@dataclass
class VeraConfig:
    """The VERA frame-level protocol (``dualvad.eval.vera``); DESIGN.md fixes kernel, sigma and snippet."""

    neighbours: int = 5  # most similar segments averaged per segment (itself included)
    temperature: float = 0.1  # softmax temperature over their cosine similarities
    kernel: int = 15  # Gaussian smoothing taps
    sigma: float = 10.0  # Gaussian sigma, in snippets
    snippet: int = 16  # frames per snippet
    position_sigma: float = 0.5  # centre position weighting, relative to the video length


@dataclass
class EvalConfig:
    """Evaluating the fine-tuned VLM (and the scorer as the baseline row) on the test split."""

    model: str = ""  # "" = RUN/finetune/final; else a folder or hub id
    ablate: str = "none"  # "none", "sampling" (focused/uniform/random frames) or "benchmarks"
    compare: list[str] = field(default_factory=list)  # ablate=benchmarks: "NAME=RUN" (or RUN) per model
    split: str = "test"
    batch_size: int = 8  # frames per forward pass
    max_new_tokens: int = 24  # generated explanation length, tokens
    thumbnails: int = 3  # top-scoring frames kept per video for the report
    timeline_videos: int = 8  # videos drawn as timelines in the report
    workers: int | None = None  # inference actors; None = up to one per CPU
    cpus_per_worker: float = 1.0
    use_gpu: bool = False  # one GPU per actor, bf16
    vera: VeraConfig = field(default_factory=VeraConfig)


@dataclass
class RayConfig:
    """How to reach Ray: ``address=None`` starts a local instance."""

    address: str | None = None
    num_cpus: int | None = None  # local instance only; None = all cores


@dataclass
class DualVADConfig:
    """The whole system's configuration; each stage reads its own section."""

    run: str = "runs/demo"  # run directory: local path or pyarrow filesystem URI
    corpus: str = ""  # corpus folder (videos/ + annotations/)
    synth: SynthConfig = field(default_factory=SynthConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    scorer: ScorerConfig = field(default_factory=ScorerConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    benchmarks: BenchmarksConfig = field(default_factory=BenchmarksConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    stages: StagesConfig = field(default_factory=StagesConfig)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> DualVADConfig:
    """Build a config from the defaults, an optional YAML file and ``key.sub=value`` overrides.

    Raises:
        ConfigError: unknown key, wrong type, or malformed override; the message names the
            key and lists the valid ones.
    """
    raw: dict[str, Any] = {}
    if path is not None:
        raw = _read_yaml(Path(path))
    for override in overrides or []:
        _apply_override(raw, override)
    return _build(DualVADConfig, raw, prefix="")


def config_to_dict(config: Any) -> dict[str, Any]:
    """The config as plain nested dicts (YAML/JSON-ready)."""
    return dataclasses.asdict(config)


def config_hash(config: Any) -> str:
    """A short, stable hash of a config (hex, 12 chars): the same values give the same hash."""
    canonical = json.dumps(config_to_dict(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; pass a YAML file from configs/")
    data = yaml.safe_load(path.read_text()) or {}
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
    node[parts[-1]] = yaml.safe_load(text) if text.strip() else ""


def _build(cls: type, raw: dict[str, Any], prefix: str) -> Any:
    """Instantiate dataclass ``cls`` from ``raw``, checking keys and types recursively."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown config key '{prefix}{unknown[0]}'; valid keys under "
            f"{prefix.rstrip('.') or 'the top level'}: {', '.join(sorted(fields))}"
        )
    values = {}
    for name, value in raw.items():
        values[name] = _coerce(hints[name], value, f"{prefix}{name}")
    try:
        return cls(**values)
    except ValueError as error:  # a section that validates its own values (e.g. SynthSpec)
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: {error}") from error


def _coerce(hint: Any, value: Any, key: str) -> Any:
    """Check ``value`` against type ``hint``; ints are accepted where floats are expected."""
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, prefix=f"{key}.")
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in (o for o in options if o is not type(None)):
            try:
                return _coerce(option, value, key)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0])
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"config key {key!r} expects a list, got {value!r}")
        (item_hint,) = typing.get_args(hint)
        return [_coerce(item_hint, item, f"{key}[{i}]") for i, item in enumerate(value)]
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is bool or isinstance(value, bool):
        if not (hint is bool and isinstance(value, bool)):
            raise ConfigError(f"config key {key!r} expects {hint.__name__}, got {value!r}")
        return value
    if not isinstance(value, hint):
        raise ConfigError(
            f"config key {key!r} expects {hint.__name__}, got {type(value).__name__} {value!r}"
        )
    return value
