"""The models the evaluate stage scores (:mod:`dualvad.pipeline.evaluate`): the run's own fine-tuned VLM,
another folder or hub id, or the runs ``eval.compare`` names, one row per sampling strategy under
``eval.ablate=sampling``; each with an identity that enters the stage's fingerprint."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass

import pyarrow.fs as pafs

from dualvad import paths
from dualvad.config import EvalConfig
from dualvad.errors import MissingInputError, StageError
from dualvad.eval.results import ModelInfo
from dualvad.eval.scoring import VLM_FRAME_SCORE, VLM_VIDEO_SCORE
from dualvad.rundir import RunDir, open_run
from dualvad.stages.records import input_fingerprint

SAMPLING_ABLATION = ("focused", "uniform", "random")


class EvaluationError(StageError):
    """Evaluation cannot run (bad settings, no test videos, no model) or a model has no video left."""


@dataclass(frozen=True)
class ModelSpec:
    """One VLM row of the evaluation: its weights (a folder inside run ``run_uri``, or a path / hub id when
    ``run_uri`` is ``None``) and the sampling strategy that picks its frames."""

    name: str
    run_uri: str | None
    path: str
    strategy: str


def model_specs(run: RunDir, settings: EvalConfig, strategy: str) -> list[ModelSpec]:
    """The VLM rows ``eval.ablate`` asks for (see the module docstring); ``strategy`` is the one
    ``RUN/samples`` used; none for ``scorer`` (the scorer's row alone). Errors name the setting to fix."""
    if settings.ablate == "scorer":
        return []
    if settings.ablate == "benchmarks":
        if not settings.compare:
            raise EvaluationError("eval.ablate=benchmarks needs the runs to compare: "
                                  "eval.compare='[image=RUN_A, video=RUN_B, both=RUN_C]'")
        return [_compare_spec(entry, strategy) for entry in settings.compare]
    run_uri, path = _own_model(run, settings.model)
    strategies = SAMPLING_ABLATION if settings.ablate == "sampling" else (strategy,)
    return [ModelSpec(f"vlm/{name}", run_uri, path, name) for name in strategies]


def model_identity(spec: ModelSpec) -> str:
    """What a model from outside this run is: another run's finetune fingerprint, or for a folder or hub
    id its files (name, size, mtime)."""
    if spec.run_uri is not None:
        return input_fingerprint(open_run(spec.run_uri), paths.FINETUNE)
    fs, path = pafs.LocalFileSystem(), spec.path
    weights = []
    if fs.get_file_info(path).type == pafs.FileType.Directory:
        files = fs.get_file_info(pafs.FileSelector(path, recursive=True))
        weights = sorted((i.path, i.size, i.mtime_ns) for i in files if i.type == pafs.FileType.File)
    return hashlib.sha256(json.dumps([path, weights]).encode()).hexdigest()[:16]


def _own_model(run: RunDir, model: str) -> tuple[str | None, str]:
    if model:
        return None, model
    if not run.exists(paths.FINETUNE, paths.FINETUNE_FINAL_DIR, "config.json"):
        raise MissingInputError(f"{run.path(paths.FINETUNE, paths.FINETUNE_FINAL_DIR)} holds no model: run "
                                "`dualvad finetune` first, or set eval.model to a folder or hub id")
    return run.uri, run.path(paths.FINETUNE, paths.FINETUNE_FINAL_DIR)


def _compare_spec(entry: str, strategy: str) -> ModelSpec:
    """``NAME=RUN`` or ``RUN`` (named after its folder): that run's fine-tuned model."""
    name, sep, uri = entry.partition("=")
    if not sep:
        name, uri = os.path.basename(entry.rstrip("/")), entry
    other = open_run(uri)
    if not other.exists(paths.FINETUNE, paths.FINETUNE_FINAL_DIR, "config.json"):
        raise MissingInputError(f"eval.compare entry {entry!r}: "
                                f"{other.path(paths.FINETUNE, paths.FINETUNE_FINAL_DIR)} holds no model; "
                                "fine-tune that run first")
    return ModelSpec(f"vlm/{name}", other.uri, other.path(paths.FINETUNE, paths.FINETUNE_FINAL_DIR), strategy)


def vlm_info(spec: ModelSpec) -> ModelInfo:
    """What the report says about a VLM row: its weights and strategy, score scales, and a flag when its
    architecture is a random preset's (``tiny``/``small``: no InternVL3-2B weights behind it)."""
    from dualvad.vlm.model import preset_of

    config = _model_config(spec)
    preset = preset_of(config) if config is not None else None
    if preset is None:
        warning = ""
    elif spec.run_uri is None:  # a folder evaluated as given (eval.model)
        warning = f"random weights ({preset} preset, not InternVL3-2B): chance-level by construction"
    else:
        warning = (f"{preset} preset: random initial weights fine-tuned in {spec.run_uri}, not InternVL3-2B; "
                   "a smoke-test model, expect near-chance scores")
    origin = f"fine-tuned in {spec.run_uri}: " if spec.run_uri is not None else ""
    return ModelInfo(weights=f"{origin}{spec.path}, on {spec.strategy} frames", video_score=VLM_VIDEO_SCORE,
                     frame_score=VLM_FRAME_SCORE, warning=warning,
                     no_explanation="the model's answer to the localisation question about its "
                                    "highest-scoring clip was empty")


def _model_config(spec: ModelSpec) -> dict | None:
    """The model's ``config.json`` as a dict; ``None`` for a hub id (not a folder here)."""
    fs, path = (open_run(spec.run_uri).fs, spec.path) if spec.run_uri else (pafs.LocalFileSystem(), spec.path)
    if fs.get_file_info(f"{path}/config.json").type != pafs.FileType.File:
        return None
    with fs.open_input_stream(f"{path}/config.json") as stream:
        return json.loads(stream.read())
