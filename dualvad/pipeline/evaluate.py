"""The evaluation stage: the fine-tuned VLM over the test split as Ray Data batch inference -> ``RUN/eval``.

For each evaluated model (the VLM with one sampling strategy, or one of several VLMs) every test video gets
its sampler's frames (``dualvad.pipeline.sample.sample_videos`` with the model's strategy, on the scorer's
segment scores), re-decoded with decord; an actor pool holding the VLM (:class:`EvalWorker`, one GPU each
on a cluster) asks :class:`dualvad.vlm.inference.VLMJudge` about every frame and every clip of
``benchmarks.clip_frames`` sampled frames. :mod:`dualvad.eval.scoring` turns the answers into segment and
video scores; the scorer's own segment scores are the baseline row. Outputs:

- ``RUN/eval/predictions/<model>.parquet``: the raw answers (``schema.PREDICTIONS_SCHEMA``); a re-run with
  the same model weights and settings reuses them;
- ``RUN/eval/metrics.json``: every metric per model (plain frame AUC, VERA frame AUC, AP, video AUC);
- ``RUN/eval/results.md`` and ``results.csv``: the table, one row per model;
- ``RUN/eval/report.html`` and its PNGs (ROC curves, per-video timelines), see :mod:`dualvad.eval.report`.

A video that cannot be decoded, or that has fewer frames than the sampler's budget, is a recorded failure
(``RUN/eval/_failures.parquet``), left out of that model's metrics; the stage fails only if a model has no
video left.

``eval.ablate``: ``none`` (the configured strategy), ``sampling`` (focused, uniform and random frames for
the same model) or ``benchmarks`` (the models of the runs in ``eval.compare``, e.g. trained on the image
benchmark only, the video benchmark only, and both).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import ray
from PIL import Image

from dualvad import schema as S
from dualvad.config import DualVADConfig, EvalConfig
from dualvad.corpus.layout import NORMAL_LABEL
from dualvad.errors import MissingInputError, StageError
from dualvad.eval.results import ModelResult, Thumbnail, VideoResult, model_metrics
from dualvad.eval.scoring import segment_scores_from_samples, top_positions, video_score_from_clips
from dualvad.eval.tables import csv_table, markdown_table
from dualvad.pipeline.runtime import actor_pool, ensure_ray
from dualvad.pipeline.sample import sample_videos, segments_with_scores
from dualvad.rundir import RunDir, open_run

log = logging.getLogger(__name__)

STAGE = "eval"
PREDICTIONS_DIR = "predictions"
FAILURES_FILE = "_failures.parquet"
SCORER_ROW = "scorer"
SAMPLING_ABLATION = ("focused", "uniform", "random")
THUMBNAIL_SIZE = 192  # px, longer side of report thumbnails


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


@dataclass(frozen=True)
class EvalSummary:
    models: tuple[str, ...]
    videos: int
    failures: int
    table: str  # Markdown
    seconds: float
    output: str  # RUN/eval/report.html

    def __str__(self) -> str:
        return (f"evaluate: {self.videos} test videos, {len(self.models)} models, {self.failures} failures, "
                f"{self.seconds:.1f} s -> {self.output}\n{self.table}")


@dataclass
class TestVideo:
    """A test video as the scorer saw it: bounds int (K, 2), features float32 (K, D), scores float32 (K,)."""

    video_id: str
    label: str
    num_frames: int
    fps: float
    bounds: np.ndarray
    features: np.ndarray
    scores: np.ndarray
    gt_intervals: list[tuple[int, int]]


# ------------------------------------------------------------------------------------------------ driver


def run_evaluate(config: DualVADConfig) -> EvalSummary:
    """Evaluate the scorer and the VLM model(s) ``eval`` names on the ``eval.split`` videos."""
    started = time.perf_counter()
    run, settings = open_run(config.run), config.eval
    table = _test_table(run, settings.split)
    videos = _test_videos(table)
    vera = settings.vera
    features = {video.video_id: video.features for video in videos}
    results = [_scorer_result(videos)]
    failures: list[dict] = []
    sampler_input = table.drop_columns([S.FEATURE])  # the sampler reads bounds and scores, not features
    for spec in model_specs(run, settings, config.sample.strategy):
        predictions = _predictions(run, config, spec, sampler_input)
        failures += [row for row in predictions if row[S.ERROR] is not None]
        results.append(_vlm_result(spec.name, videos, predictions))
    undefined = {}
    for result in results:
        result.metrics, undefined[result.name] = model_metrics(result.videos, features, vera)
        for metric, reason in undefined[result.name].items():
            log.warning("evaluate: %s %s is undefined: %s", result.name, metric, reason)
    markdown = markdown_table(results)
    report = _write_outputs(run, config, results, markdown, failures, undefined)
    return EvalSummary(tuple(r.name for r in results), len(videos), len(failures), markdown,
                       time.perf_counter() - started, report)


def model_specs(run: RunDir, settings: EvalConfig, strategy: str) -> list[ModelSpec]:
    """The VLM rows ``eval.ablate`` asks for (see the module docstring); errors name the setting to fix."""
    if settings.ablate == "benchmarks":
        if not settings.compare:
            raise EvaluationError("eval.ablate=benchmarks needs the runs to compare: "
                                  "eval.compare='[image=RUN_A, video=RUN_B, both=RUN_C]'")
        return [_compare_spec(entry, strategy) for entry in settings.compare]
    run_uri, path = _own_model(run, settings.model)
    strategies = SAMPLING_ABLATION if settings.ablate == "sampling" else (strategy,)
    return [ModelSpec(f"vlm/{name}", run_uri, path, name) for name in strategies]


def _own_model(run: RunDir, model: str) -> tuple[str | None, str]:
    if model:
        return None, model
    if not run.exists("finetune", "final", "config.json"):
        raise MissingInputError(f"{run.path('finetune', 'final')} holds no model: run `dualvad finetune` "
                                "first, or set eval.model to a folder or hub id")
    return run.uri, run.path("finetune", "final")


def _compare_spec(entry: str, strategy: str) -> ModelSpec:
    """``NAME=RUN`` or ``RUN`` (named after its folder): that run's fine-tuned model."""
    name, sep, uri = entry.partition("=")
    if not sep:
        name, uri = os.path.basename(entry.rstrip("/")), entry
    other = open_run(uri)
    if not other.exists("finetune", "final", "config.json"):
        raise MissingInputError(f"eval.compare entry {entry!r}: {other.path('finetune', 'final')} holds no "
                                "model; fine-tune that run first")
    return ModelSpec(f"vlm/{name}", other.uri, other.path("finetune", "final"), strategy)


def _test_table(run: RunDir, split: str) -> pa.Table:
    """Segments + scorer scores (+ features) of the ``split`` videos, sorted by (video, segment)."""
    table = segments_with_scores(run, extra_columns=(S.FEATURE,))
    table = table.filter(pc.equal(table[S.SPLIT], split))
    if table.num_rows == 0:
        raise EvaluationError(f"{run.path('segments')} has no videos of split {split!r} (eval.split)")
    return table


def _test_videos(table: pa.Table) -> list[TestVideo]:
    columns = table.to_pydict()
    ids = columns[S.VIDEO_ID]
    starts = [i for i in range(len(ids)) if i == 0 or ids[i] != ids[i - 1]]
    videos = []
    for first, last in zip(starts, [*starts[1:], len(ids)], strict=True):
        flat = columns[S.GT_INTERVALS][first] or []
        videos.append(TestVideo(
            ids[first], columns[S.LABEL][first], int(columns[S.NUM_FRAMES][first]),
            float(columns[S.FPS][first]),
            np.stack([columns[S.START_FRAME][first:last], columns[S.END_FRAME][first:last]], axis=1),
            np.asarray(columns[S.FEATURE][first:last], dtype=np.float32),
            np.asarray(columns[S.SCORE][first:last], dtype=np.float32),
            [(int(flat[i]), int(flat[i + 1])) for i in range(0, len(flat), 2)]))
    return videos


def _scorer_result(videos: list[TestVideo]) -> ModelResult:
    """The baseline row: the segment scorer's own scores; video score = its highest segment score."""
    return ModelResult(SCORER_ROW, [
        VideoResult(v.video_id, v.label, v.num_frames, v.fps, v.gt_intervals, v.bounds, v.scores,
                    float(v.scores.max())) for v in videos])


def _vlm_result(name: str, videos: list[TestVideo], predictions: list[dict]) -> ModelResult:
    by_id = {row[S.VIDEO_ID]: row for row in predictions if row[S.ERROR] is None}
    results = []
    for video in videos:
        row = by_id.get(video.video_id)
        if row is None:
            continue
        frames = np.asarray(row[S.FRAMES], dtype=np.int64)
        scores = np.asarray(row[S.FRAME_SCORES], dtype=np.float32)
        thumbs = [Thumbnail(int(f), float(scores[np.searchsorted(frames, f)]), jpeg)
                  for f, jpeg in zip(row[S.THUMB_FRAMES], row[S.THUMB_JPEGS], strict=True)]
        results.append(VideoResult(
            video.video_id, video.label, video.num_frames, video.fps, video.gt_intervals, video.bounds,
            segment_scores_from_samples(video.bounds, frames, scores),
            video_score_from_clips(row[S.CLIP_SCORES]),
            frames, scores, row[S.EXPLANATION], thumbs))
    if not results:
        errors = [row[S.ERROR] for row in predictions if row[S.ERROR] is not None]
        raise EvaluationError(f"{name}: no test video could be evaluated ({len(errors)} failures), e.g. "
                              f"{errors[0] if errors else 'no predictions'}")
    return ModelResult(name, results)


# ----------------------------------------------------------------------------------------- predictions


def _predictions(run: RunDir, config: DualVADConfig, spec: ModelSpec, table: pa.Table) -> list[dict]:
    """The prediction rows of ``spec``: reused when the weights, the sampled frames and the settings are
    unchanged, else computed."""
    rows, too_short = sample_videos(table, replace(config.sample, strategy=spec.strategy))
    fingerprint = predictions_fingerprint(spec, config, rows)
    parts = (STAGE, PREDICTIONS_DIR, f"{_safe(spec.name)}.parquet")
    if run.exists(*parts):
        cached = pq.read_table(run.path(*parts), filesystem=run.fs)
        if (cached.schema.metadata or {}).get(b"fingerprint") == fingerprint.encode():
            log.info("evaluate: %s already evaluated with these weights, frames and settings", spec.name)
            return cached.to_pylist()
    # A video the sampler cannot serve (fewer frames than the budget) is a recorded failure, like one
    # that cannot be decoded.
    predictions = _infer(config, spec, rows) if rows else []
    predictions += [{S.VIDEO_ID: row[S.VIDEO_ID], S.MODEL: spec.name, S.STRATEGY: spec.strategy,
                     S.ERROR: row[S.REASON]} for row in too_short]
    result = pa.Table.from_pylist(predictions, schema=S.PREDICTIONS_SCHEMA)
    run.write_table(result.replace_schema_metadata({"fingerprint": fingerprint}), *parts)
    return predictions


def predictions_fingerprint(spec: ModelSpec, config: DualVADConfig, rows: list[dict]) -> str:
    """Hash of what the predictions depend on: the weights' files (name, size, mtime), every video's
    sampled frames (they follow the scorer's scores and the sampler's settings), the frame size and
    clip length, the question settings."""
    fs, path = (open_run(spec.run_uri).fs, spec.path) if spec.run_uri else (pafs.LocalFileSystem(), spec.path)
    weights = []
    if fs.get_file_info(path).type == pafs.FileType.Directory:
        files = fs.get_file_info(pafs.FileSelector(path))
        weights = sorted((i.base_name, i.size, i.mtime_ns) for i in files if i.type == pafs.FileType.File)
    frames = [(row[S.VIDEO_ID], row[S.VIDEO_PATH], row[S.FRAMES]) for row in rows]
    settings = {"spec": asdict(spec), "weights": weights, "frames": frames,
                "image_size": config.benchmarks.image_size, "clip_frames": config.benchmarks.clip_frames,
                "max_new_tokens": config.eval.max_new_tokens, "thumbnails": config.eval.thumbnails}
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _infer(config: DualVADConfig, spec: ModelSpec, rows: list[dict]) -> list[dict]:
    """Ray Data batch inference: one video per call to an :class:`EvalWorker` actor."""
    ensure_ray(config.ray)
    settings = config.eval
    worker_settings = {"image_size": config.benchmarks.image_size,
                       "clip_frames": config.benchmarks.clip_frames,
                       "batch_size": settings.batch_size, "max_new_tokens": settings.max_new_tokens,
                       "thumbnails": settings.thumbnails, "use_gpu": settings.use_gpu}
    dataset = ray.data.from_items(rows, override_num_blocks=len(rows)).map_batches(
        EvalWorker,
        fn_constructor_kwargs={"spec": spec, "settings": worker_settings},
        batch_size=1,
        batch_format="pyarrow",
        compute=actor_pool(settings.workers, len(rows)),
        num_cpus=settings.cpus_per_worker,
        num_gpus=1 if settings.use_gpu else 0,
    )
    predictions: list[dict] = []
    for batch in dataset.iter_batches(batch_format="pyarrow", batch_size=None):
        predictions += batch.to_pylist()
        log.info("evaluate: %s %d/%d videos", spec.name, len(predictions), len(rows))
    return sorted(predictions, key=lambda row: row[S.VIDEO_ID])


# ------------------------------------------------------------------------------------------------ worker


class EvalWorker:
    """Ray Data actor: holds one VLM; answers the benchmark questions about one video's sampled frames."""

    def __init__(self, spec: ModelSpec, settings: dict[str, Any]) -> None:
        import torch

        from dualvad.vlm.inference import VLMJudge
        from dualvad.vlm.model import load_model
        from dualvad.vlm.processor import load_processor

        self.spec, self.settings = spec, settings
        self._local = tempfile.TemporaryDirectory(prefix="dualvad-eval-")
        path = _local_model(spec, self._local.name)
        gpu = settings["use_gpu"]
        model = load_model(path, dtype=torch.bfloat16 if gpu else torch.float32,
                           device="cuda" if gpu else "cpu")
        self.judge = VLMJudge(model, load_processor(path), settings["batch_size"], settings["max_new_tokens"])

    def __call__(self, batch: pa.Table) -> pa.Table:
        return pa.Table.from_pylist([self._evaluate(row) for row in batch.to_pylist()],
                                    schema=S.PREDICTIONS_SCHEMA)

    def _evaluate(self, row: dict) -> dict:
        from dualvad.benchmarks.builder import SampledVideo, clip_windows, decode_selected
        from dualvad.video.decode import VideoDecodeError

        video = SampledVideo.from_row(row)
        base = {S.VIDEO_ID: video.video_id, S.MODEL: self.spec.name, S.STRATEGY: self.spec.strategy,
                S.FRAMES: list(video.frames)}
        try:
            frames = decode_selected(video, self.settings["image_size"])
        except VideoDecodeError as error:  # a recorded failure: the other videos go on
            return {**base, S.ERROR: f"{video.path}: {error}"}
        images = [Image.fromarray(frame) for frame in frames]
        scores = self.judge.frame_scores(images)
        windows = clip_windows(len(images), self.settings["clip_frames"])
        clips = [self.judge.judge_clip([images[i] for i in window]) for window in windows]
        best = int(np.argmax([clip.score for clip in clips]))
        top = top_positions(scores, self.settings["thumbnails"])
        return {**base, S.FRAME_SCORES: scores.tolist(), S.CLIP_STARTS: [w.start for w in windows],
                S.CLIP_SCORES: [clip.score for clip in clips], S.EXPLANATION: clips[best].explanation,
                S.THUMB_FRAMES: [video.frames[i] for i in top],
                S.THUMB_JPEGS: [_thumbnail_jpeg(images[i]) for i in top], S.ERROR: None}


def _local_model(spec: ModelSpec, scratch: str) -> str:
    """A path ``from_pretrained`` can read: the folder itself when local, else a copy in ``scratch``."""
    if spec.run_uri is None:
        return spec.path
    fs = open_run(spec.run_uri).fs
    if isinstance(fs, pafs.LocalFileSystem):
        return spec.path
    pafs.copy_files(spec.path, scratch, source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())
    return scratch


def _thumbnail_jpeg(image: Image.Image) -> bytes:
    small = image.copy()
    small.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
    buffer = io.BytesIO()
    small.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


# ----------------------------------------------------------------------------------------------- outputs


def _write_outputs(run: RunDir, config: DualVADConfig, results: list[ModelResult], markdown: str,
                   failures: list[dict], undefined: dict[str, dict[str, str]]) -> str:
    """metrics.json (with why a metric is undefined), results.md/.csv, the failures table and the report;
    returns the report's path."""
    from dualvad.eval.report import write_report

    metrics = {"split": config.eval.split, "ablate": config.eval.ablate,
               "videos": {r.name: len(r.videos) for r in results},
               "anomalous_videos": sum(v.label != NORMAL_LABEL for v in results[0].videos),
               "metrics": {r.name: r.metrics for r in results},
               "undefined": {name: reasons for name, reasons in undefined.items() if reasons}}
    run.write_text(json.dumps(metrics, indent=2), STAGE, "metrics.json")
    run.write_text(markdown, STAGE, "results.md")
    run.write_text(csv_table(results), STAGE, "results.csv")
    failure_rows = [{S.VIDEO_ID: row[S.VIDEO_ID], S.VIDEO_PATH: None,
                     S.REASON: f"{row[S.MODEL]}: {row[S.ERROR]}"} for row in failures]
    run.write_table(pa.Table.from_pylist(failure_rows, schema=S.FAILURES_SCHEMA), STAGE, FAILURES_FILE)
    with tempfile.TemporaryDirectory(prefix="dualvad-report-") as local:
        write_report(local, results, markdown, title=f"dualvad evaluation: {run.uri}",
                     timeline_videos=config.eval.timeline_videos)
        for name in sorted(os.listdir(local)):
            run.write_bytes(Path(local, name).read_bytes(), STAGE, name)
    return run.path(STAGE, "report.html")


def _safe(name: str) -> str:
    """A model name as a file name: ``vlm/focused`` -> ``vlm-focused``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-")
