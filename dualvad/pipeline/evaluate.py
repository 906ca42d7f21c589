"""The evaluation stage: the fine-tuned VLM over the test split as Ray Data batch inference -> ``RUN/eval``.

For each evaluated model (the VLM with one sampling strategy, or one of several VLMs) every test video gets
the frames of ``RUN/samples`` (the frames the benchmarks were built from), re-decoded with decord; an
ablation over strategies other than the one ``RUN/samples`` used samples them itself, with the
sample stage's recorded settings, and keeps them in ``RUN/eval/samples/<strategy>.parquet``. An actor pool
holding the VLM (:class:`EvalWorker`, one GPU each
on a cluster) asks :class:`dualvad.vlm.inference.VLMJudge` about every frame and every clip of
``benchmarks.clip_frames`` sampled frames, through :func:`dualvad.vlm.judge.judge_frames`, the per-video
VLM work the online detector runs too (frames JPEG-encoded at ``benchmarks.jpeg_quality`` and decoded, as the
benchmarks stored them and as the detector's Judge receives them). :mod:`dualvad.eval.scoring` turns the
answers into segment and video scores; the scorer's own segment scores are the baseline row. Outputs:

- ``RUN/eval/predictions/<model>.parquet``: the raw answers (``schema.PREDICTIONS_SCHEMA``); the stage
  runner skips a re-run with the same inputs, models and settings, and an interrupted run keeps the models
  it finished;
- ``RUN/eval/metrics.json``: every metric per model (plain frame AUC, VERA frame AUC, AP, video AUC), the
  same per anomaly category (the category's videos plus all normal ones), and the videos whose annotated
  frame count (VERA's ``UCF_Eval.json`` ``length``) differs from the decoded one;
- ``RUN/eval/results.md`` and ``results.csv`` / ``results_categories.csv``: the tables, one row per model
  and one per model and category;
- ``RUN/eval/report.html`` and its PNGs (ROC curves, per-video timelines), see :mod:`dualvad.eval.report`:
  its header names the run, corpus, sampling, models (a VLM of a random ``tiny``/``small`` preset's
  architecture is flagged), date and config hash, and its decisions use the serving threshold
  (:data:`dualvad.eval.scoring.SERVING_THRESHOLD`, the online detector's default); ``metrics.json`` keeps
  the same decisions (``serving_threshold``, ``at_threshold``).
- ``RUN/eval/model_card.md``: the evaluated model's card (its folder's ``README.md``, as ``dualvad finetune``
  writes it) with these metrics, when every VLM row is that one model (:mod:`dualvad.vlm.card`).

A video that cannot be decoded, or that the sampler could not serve, is a recorded failure
(``RUN/eval/_failures.parquet``), left out of that model's metrics; the stage fails past
``stages.max_failure_share`` or when a model has no video left.

``eval.ablate``: ``none`` (the configured strategy), ``sampling`` (focused, uniform and random frames for
the same model) or ``benchmarks`` (the models of the runs in ``eval.compare``, e.g. trained on the image
benchmark only, the video benchmark only, and both).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import ray
import yaml
from PIL import Image

from dualvad import console, paths
from dualvad import schema as S
from dualvad.config import DualVADConfig, EvalConfig, SampleConfig, config_hash
from dualvad.corpus.layout import UNLABELLED, is_anomaly_label
from dualvad.errors import MissingInputError, StageError
from dualvad.eval.results import (
    ModelInfo,
    ModelResult,
    Thumbnail,
    VideoResult,
    category_metrics,
    length_mismatches,
    model_metrics,
)
from dualvad.eval.scoring import (
    SERVING_THRESHOLD,
    VLM_FRAME_SCORE,
    VLM_VIDEO_SCORE,
    segment_scores_from_samples,
    top_positions,
    video_score_from_clips,
)
from dualvad.eval.tables import CATEGORY_COLUMNS, category_rows, csv_table, results_markdown
from dualvad.files import safe_name
from dualvad.pipeline.runtime import actor_pool, ensure_ray
from dualvad.pipeline.sample import sample_videos, segments_with_scores
from dualvad.rundir import RunDir, local_folder, open_run
from dualvad.stages.records import input_fingerprint, read_input, read_record
from dualvad.stages.registry import stage_named
from dualvad.stages.runner import Skipped, StageContext, run_stage
from dualvad.stages.settings import section

if TYPE_CHECKING:  # the report (matplotlib) is imported when the outputs are written
    from dualvad.eval.report import RunInfo

log = logging.getLogger(__name__)

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
    """A test video as the scorer saw it: bounds int (K, 2), features float32 (K, D), scores float32 (K,);
    ``annotated_frames`` the annotation file's frame count (``None``: it gives none)."""

    video_id: str
    label: str
    num_frames: int
    fps: float
    bounds: np.ndarray
    features: np.ndarray
    scores: np.ndarray
    gt_intervals: list[tuple[int, int]]
    annotated_frames: int | None = None


# ------------------------------------------------------------------------------------------------ driver


def run_evaluate(config: DualVADConfig, force: bool = False) -> EvalSummary | Skipped:
    """Evaluate the scorer and the VLM model(s) ``eval`` names on the ``eval.split`` videos, through the
    stage runner (inputs: segments, scores, samples and the models)."""
    run, settings = open_run(config.run), config.eval
    specs = model_specs(run, settings, _recorded_sample_settings(run).strategy)
    own = paths.FINETUNE if any(spec.run_uri == run.uri for spec in specs) else None
    declared = stage_named("evaluate")  # and the run's own fine-tuned model when it is evaluated
    stage = dataclasses.replace(declared, inputs=declared.inputs + ((own,) if own else ()))
    stage_settings = {"eval": section(settings, "workers", "cpus_per_worker"),
                      "image_size": config.benchmarks.image_size,
                      "clip_frames": config.benchmarks.clip_frames,
                      "jpeg_quality": config.benchmarks.jpeg_quality}
    external = {spec.name: _model_identity(spec) for spec in specs if spec.run_uri != run.uri}
    return run_stage(stage, run, stage_settings, lambda context: _evaluate(context, config, specs),
                     config.stages, force, external=external, effective=config)


def _evaluate(context: StageContext, config: DualVADConfig, specs: list[ModelSpec]) -> EvalSummary:
    started = time.perf_counter()
    run, settings = context.run, config.eval
    table = _test_table(run, settings.split)
    videos = _test_videos(table)
    context.videos = len(videos)
    vera = settings.vera
    features = {video.video_id: video.features for video in videos}
    results = [_scorer_result(videos, run.path(paths.SCORER, paths.SCORER_MODEL_DIR))]
    failures: list[dict] = []
    samples = _test_samples(run, settings.split)
    for spec in specs:
        rows, unserved = _frames_for(context, spec, samples, table)
        predictions = _predictions(context, config, spec, rows, {v.video_id for v in videos}, unserved)
        failures += [row for row in predictions if row[S.ERROR] is not None]
        results.append(_vlm_result(spec.name, videos, predictions, _vlm_info(spec)))
    context.record_failures(_failure_rows(failures))
    mismatches = length_mismatches(results[0].videos)
    warn_length_mismatches(mismatches)
    undefined = {}
    for result in results:
        result.metrics, undefined[result.name] = model_metrics(result.videos, features, vera)
        result.categories = category_metrics(result.videos, features, vera)
        for metric, reason in undefined[result.name].items():
            log.warning("evaluate: %s %s is undefined: %s", result.name, metric, reason)
    markdown = results_markdown(results, mismatches)
    report = _write_outputs(context, config, results, markdown, undefined, mismatches)
    _write_model_card(context.out, specs, results, settings.split)
    return EvalSummary(tuple(r.name for r in results), len(videos), len(failures), markdown,
                       time.perf_counter() - started, report)


def warn_length_mismatches(mismatches: dict[str, tuple[int, int]]) -> None:
    """One warning per video whose annotation file states another frame count than the decoder found
    (``video id -> (decoded, annotated)``); they are also kept in metrics.json and results.md."""
    for video_id, (decoded, annotated) in sorted(mismatches.items()):
        log.warning("evaluate: %s: the annotation gives %d frames, the decoder found %d; the VERA protocol "
                    "uses the annotation's %d", video_id, annotated, decoded, annotated)


def _recorded_sample_settings(run: RunDir) -> SampleConfig:
    """The ``sample.*`` settings ``RUN/samples`` was made with (from the runner's record)."""
    input_fingerprint(run, paths.SAMPLES)  # raises with the fix when the samples are missing
    return SampleConfig(**read_record(run, paths.SAMPLES)["settings"])


def _test_samples(run: RunDir, split: str) -> dict[str, dict]:
    """``RUN/samples`` rows of the ``split`` videos, by video id."""
    table = read_input(run, paths.SAMPLES, unique=(S.VIDEO_ID,))
    if table is not None:
        labelled = pc.not_equal(table[S.LABEL], UNLABELLED)  # as _test_table: metrics need labels
        table = table.filter(pc.and_(pc.equal(table[S.SPLIT], split), labelled))
    rows = [] if table is None else table.to_pylist()
    return {row[S.VIDEO_ID]: row for row in rows}


def _frames_for(context: StageContext, spec: ModelSpec, samples: dict[str, dict],
                table: pa.Table) -> tuple[list[dict], dict[str, str]]:
    """(the sample rows ``spec`` is evaluated on, sorted by video; why the other test videos have none).

    The strategy of ``RUN/samples`` reads its rows; another strategy (``--ablate sampling``) is sampled
    here with the recorded settings and kept in ``RUN/eval/samples/<strategy>.parquet``."""
    recorded = _recorded_sample_settings(context.run)
    if spec.strategy == recorded.strategy:
        return [samples[key] for key in sorted(samples)], {}
    parts = (paths.EVAL_SAMPLES_DIR, f"{spec.strategy}.parquet")
    rows, failures = sample_videos(table.drop_columns([S.FEATURE]), SampleConfig(
        **{**asdict(recorded), "strategy": spec.strategy}))
    context.out.write_table(pa.Table.from_pylist(rows, schema=S.SAMPLES_SCHEMA), *parts)
    return rows, {row[S.VIDEO_ID]: row[S.REASON] for row in failures}


def model_specs(run: RunDir, settings: EvalConfig, strategy: str) -> list[ModelSpec]:
    """The VLM rows ``eval.ablate`` asks for (see the module docstring); ``strategy`` is the one
    ``RUN/samples`` used. Errors name the setting to fix."""
    if settings.ablate == "benchmarks":
        if not settings.compare:
            raise EvaluationError("eval.ablate=benchmarks needs the runs to compare: "
                                  "eval.compare='[image=RUN_A, video=RUN_B, both=RUN_C]'")
        return [_compare_spec(entry, strategy) for entry in settings.compare]
    run_uri, path = _own_model(run, settings.model)
    strategies = SAMPLING_ABLATION if settings.ablate == "sampling" else (strategy,)
    return [ModelSpec(f"vlm/{name}", run_uri, path, name) for name in strategies]


def _model_identity(spec: ModelSpec) -> str:
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


def _test_table(run: RunDir, split: str) -> pa.Table:
    """Segments + scorer scores (+ features, + annotated frame counts where the segments hold them: runs
    ingested before that column have none) of the labelled ``split`` videos, sorted by (video, segment).

    Unlabelled videos are left out (the metrics need labels); a split of unlabelled videos only is an
    error that says how to score them instead."""
    files = run.parquet_files(paths.SEGMENTS)
    annotated = bool(files) and S.ANNOTATED_FRAMES in pq.read_schema(files[0], filesystem=run.fs).names
    extra = (S.FEATURE, S.ANNOTATED_FRAMES) if annotated else (S.FEATURE,)
    table = segments_with_scores(run, extra_columns=extra)
    table = table.filter(pc.equal(table[S.SPLIT], split))
    if table.num_rows == 0:
        raise EvaluationError(f"{run.path(paths.SEGMENTS)} has no videos of split {split!r} (eval.split)")
    unlabelled = pc.equal(table[S.LABEL], UNLABELLED)
    if pc.all(unlabelled).as_py():
        count = len(pc.unique(table[S.VIDEO_ID]))
        raise EvaluationError(
            f"the {count} {split!r} videos of {run.uri} are all unlabelled (a corpus without annotations/): "
            "evaluate's metrics need labels. Label them in annotations/test.txt, or score them without "
            f"metrics: `dualvad detect VIDEO_OR_FOLDER --run {run.uri}`")
    if pc.any(unlabelled).as_py():
        log.warning("evaluate: %d unlabelled %r videos are left out of the evaluation",
                    len(pc.unique(table.filter(unlabelled)[S.VIDEO_ID])), split)
        table = table.filter(pc.invert(unlabelled))
    return table


def _test_videos(table: pa.Table) -> list[TestVideo]:
    columns = table.to_pydict()
    ids = columns[S.VIDEO_ID]
    starts = [i for i in range(len(ids)) if i == 0 or ids[i] != ids[i - 1]]
    videos = []
    annotated = columns.get(S.ANNOTATED_FRAMES, [None] * len(ids))
    for first, last in zip(starts, [*starts[1:], len(ids)], strict=True):
        flat = columns[S.GT_INTERVALS][first] or []
        videos.append(TestVideo(
            ids[first], columns[S.LABEL][first], int(columns[S.NUM_FRAMES][first]),
            float(columns[S.FPS][first]),
            np.stack([columns[S.START_FRAME][first:last], columns[S.END_FRAME][first:last]], axis=1),
            np.asarray(columns[S.FEATURE][first:last], dtype=np.float32),
            np.asarray(columns[S.SCORE][first:last], dtype=np.float32),
            [(int(flat[i]), int(flat[i + 1])) for i in range(0, len(flat), 2)], annotated[first]))
    return videos


def _scorer_result(videos: list[TestVideo], weights: str) -> ModelResult:
    """The baseline row: the segment scorer's own scores; video score = its highest segment score."""
    info = ModelInfo(weights=weights, video_score="the highest segment score, in [0, 1]",
                     frame_score="its segment's scorer score (sigmoid), in [0, 1]",
                     no_explanation="the segment scorer gives no text")
    return ModelResult(SCORER_ROW, [
        VideoResult(v.video_id, v.label, v.num_frames, v.fps, v.gt_intervals, v.bounds, v.scores,
                    float(v.scores.max()), annotated_frames=v.annotated_frames) for v in videos], info=info)


def _vlm_info(spec: ModelSpec) -> ModelInfo:
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


def _vlm_result(name: str, videos: list[TestVideo], predictions: list[dict], info: ModelInfo) -> ModelResult:
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
            frames, scores, row[S.EXPLANATION], thumbs, video.annotated_frames))
    if not results:
        errors = [row[S.ERROR] for row in predictions if row[S.ERROR] is not None]
        raise EvaluationError(f"{name}: no test video could be evaluated ({len(errors)} failures), e.g. "
                              f"{errors[0] if errors else 'no predictions'}")
    return ModelResult(name, results, info=info)


# ----------------------------------------------------------------------------------------- predictions


def _predictions(context: StageContext, config: DualVADConfig, spec: ModelSpec, rows: list[dict],
                 test_ids: set[str], unserved: dict[str, str]) -> list[dict]:
    """The prediction rows of ``spec`` on ``rows``, plus a failure row for every test video without frames;
    kept in the staging folder, so an interrupted evaluation keeps the models it finished."""
    parts = (paths.PREDICTIONS_DIR, f"{_safe(spec.name)}.parquet")
    if context.out.exists(*parts):
        log.info("evaluate: %s already evaluated by the interrupted run", spec.name)
        return pq.read_table(context.out.path(*parts), filesystem=context.out.fs).to_pylist()
    predictions = _infer(config, spec, rows) if rows else []
    served = {row[S.VIDEO_ID] for row in rows}
    for video_id in sorted(test_ids - served):
        reason = unserved.get(video_id, f"{video_id}: not in {context.run.path(paths.SAMPLES)} (see its "
                                        f"{paths.FAILURES_FILE})")
        predictions.append({S.VIDEO_ID: video_id, S.MODEL: spec.name, S.STRATEGY: spec.strategy,
                            S.ERROR: reason})
    context.out.write_table(pa.Table.from_pylist(predictions, schema=S.PREDICTIONS_SCHEMA), *parts)
    return predictions


def _infer(config: DualVADConfig, spec: ModelSpec, rows: list[dict]) -> list[dict]:
    """Ray Data batch inference: one video per call to an :class:`EvalWorker` actor."""
    ensure_ray(config.ray)
    settings = config.eval
    worker_settings = {"image_size": config.benchmarks.image_size,
                       "clip_frames": config.benchmarks.clip_frames,
                       "jpeg_quality": config.benchmarks.jpeg_quality,
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
    with console.bar(f"evaluate {spec.name}", len(rows), "videos") as advance:
        for batch in dataset.iter_batches(batch_format="pyarrow", batch_size=None):
            predictions += batch.to_pylist()
            log.info("evaluate: %s %d/%d videos", spec.name, len(predictions), len(rows))
            advance(batch.num_rows)
    return sorted(predictions, key=lambda row: row[S.VIDEO_ID])


# ------------------------------------------------------------------------------------------------ worker


class EvalWorker:
    """Ray Data actor: holds one VLM; answers the benchmark questions about one video's sampled frames."""

    def __init__(self, spec: ModelSpec, settings: dict[str, Any]) -> None:
        from dualvad.vlm.judge import load_vlm_judge

        self.spec, self.settings = spec, settings
        self._local = tempfile.TemporaryDirectory(prefix="dualvad-eval-")
        path = _local_model(spec, self._local.name)
        self.judge = load_vlm_judge(path, "cuda" if settings["use_gpu"] else "cpu", settings["batch_size"],
                                    settings["max_new_tokens"])

    def __call__(self, batch: pa.Table) -> pa.Table:
        return pa.Table.from_pylist([self._evaluate(row) for row in batch.to_pylist()],
                                    schema=S.PREDICTIONS_SCHEMA)

    def _evaluate(self, row: dict) -> dict:
        from dualvad.benchmarks.builder import SampledVideo, decode_selected
        from dualvad.video.decode import VideoDecodeError
        from dualvad.video.jpeg import decode_jpegs, encode_jpeg
        from dualvad.vlm.judge import judge_frames

        video = SampledVideo.from_row(row)
        base = {S.VIDEO_ID: video.video_id, S.MODEL: self.spec.name, S.STRATEGY: self.spec.strategy,
                S.FRAMES: list(video.frames)}
        try:
            frames = decode_selected(video, self.settings["image_size"])
        except VideoDecodeError as error:  # a recorded failure: the other videos go on
            return {**base, S.ERROR: f"{video.path}: {error}"}
        # JPEG round trip at the benchmarks' quality: the frames the VLM was fine-tuned on, and the ones
        # the online detector sends its Judge, so both score the same pixels.
        images = decode_jpegs([encode_jpeg(frame, self.settings["jpeg_quality"]) for frame in frames])
        judgement = judge_frames(self.judge, images, self.settings["clip_frames"])
        best = int(np.argmax(judgement.clip_scores))
        top = top_positions(judgement.frame_scores, self.settings["thumbnails"])
        return {**base, S.FRAME_SCORES: judgement.frame_scores.tolist(), S.CLIP_STARTS: judgement.clip_starts,
                S.CLIP_SCORES: judgement.clip_scores, S.EXPLANATION: judgement.explanations[best],
                S.THUMB_FRAMES: [video.frames[i] for i in top],
                S.THUMB_JPEGS: [_thumbnail_jpeg(images[i]) for i in top], S.ERROR: None}


def _local_model(spec: ModelSpec, scratch: str) -> str:
    """A path ``from_pretrained`` can read: the folder itself when local, else a copy in ``scratch``."""
    if spec.run_uri is None:  # a local folder or a hub id
        return spec.path
    return local_folder(open_run(spec.run_uri).fs, spec.path, scratch)


def _thumbnail_jpeg(image: Image.Image) -> bytes:
    small = image.copy()
    small.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
    buffer = io.BytesIO()
    small.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


# ----------------------------------------------------------------------------------------------- outputs


def _write_model_card(out: RunDir, specs: list[ModelSpec], results: list[ModelResult], split: str) -> None:
    """``model_card.md``: the evaluated model's card (``README.md`` in its folder, as ``dualvad finetune``
    writes it) with these metrics (:mod:`dualvad.vlm.card`). Only when every VLM row is the same model
    (``eval.ablate`` none or sampling) and its folder holds a card; a hub id is not read."""
    from dualvad.vlm.card import evaluated_card

    models = {(spec.run_uri, spec.path) for spec in specs}
    if len(models) != 1:
        return
    ((run_uri, path),) = models
    if run_uri is not None:
        fs, card_path = open_run(run_uri).fs, f"{path}/{paths.CARD_FILE}"
    elif os.path.isdir(path):
        fs, card_path = pafs.LocalFileSystem(), os.path.join(os.path.abspath(path), paths.CARD_FILE)
    else:  # a hub id
        return
    if fs.get_file_info(card_path).type != pafs.FileType.File:
        return
    with fs.open_input_stream(card_path) as stream:
        card_text = stream.read().decode()
    rows = [result for result in results if result.name in {spec.name for spec in specs}]
    card = evaluated_card(card_text, split, {r.name: r.metrics for r in rows},
                          {r.name: len(r.videos) for r in rows})
    out.write_text(str(card), paths.EVAL_MODEL_CARD_FILE)


def _failure_rows(failures: list[dict]) -> list[dict]:
    """Prediction failures as rows of the failures table (one per model and video)."""
    return [{S.VIDEO_ID: row[S.VIDEO_ID], S.VIDEO_PATH: None, S.REASON: f"{row[S.MODEL]}: {row[S.ERROR]}"}
            for row in failures]


def _write_outputs(context: StageContext, config: DualVADConfig, results: list[ModelResult], markdown: str,
                   undefined: dict[str, dict[str, str]], mismatches: dict[str, tuple[int, int]]) -> str:
    """metrics.json (with why a metric is undefined), results.md/.csv, results_categories.csv and the
    report into the stage's output; returns the report's published path."""
    from dualvad.eval.report import threshold_counts, write_report

    out = context.out
    decisions = {r.name: asdict(threshold_counts(r, SERVING_THRESHOLD)) for r in results}
    metrics = {"split": config.eval.split, "ablate": config.eval.ablate,
               "videos": {r.name: len(r.videos) for r in results},
               "anomalous_videos": sum(is_anomaly_label(v.label) for v in results[0].videos),
               "metrics": {r.name: r.metrics for r in results},
               # per anomaly category: that category's videos plus all normal test videos
               "categories": {r.name: r.categories for r in results},
               "category_videos": {category: len(results[0].category_videos(category))
                                   for category in results[0].categories},
               "undefined": {name: reasons for name, reasons in undefined.items() if reasons},
               "length_mismatches": {video: {"decoded": decoded, "annotated": annotated}
                                     for video, (decoded, annotated) in sorted(mismatches.items())},
               # video-level decisions video_score >= the online detector's default threshold
               "serving_threshold": SERVING_THRESHOLD, "at_threshold": decisions,
               "warnings": {r.name: r.info.warning for r in results if r.info.warning}}
    out.write_text(json.dumps(metrics, indent=2), paths.METRICS_FILE)
    out.write_text(markdown, "results.md")
    out.write_text(csv_table(results), "results.csv")
    out.write_text(csv_table(category_rows(results), CATEGORY_COLUMNS), "results_categories.csv")
    with tempfile.TemporaryDirectory(prefix="dualvad-report-") as local:
        write_report(local, results, title=f"dualvad evaluation: {context.run.uri}",
                     timeline_videos=config.eval.timeline_videos, threshold=SERVING_THRESHOLD,
                     info=_run_info(context.run, config))
        for name in sorted(os.listdir(local)):
            out.write_bytes(Path(local, name).read_bytes(), name)
    return context.run.path(paths.EVAL, "report.html")


def _run_info(run: RunDir, config: DualVADConfig) -> RunInfo:
    """The report's header: the corpus the run ingested, the sampling ``RUN/samples`` recorded, the scorer's
    exported metrics, now (UTC) and the hash of the effective config."""
    from dualvad.eval.report import RunInfo, scorer_validation

    ingested = yaml.safe_load(_read_text(run, paths.SEGMENTS, paths.CONFIG_FILE) or "{}") or {}
    corpus = config.corpus or ingested.get("corpus") or "not recorded"
    scorer = _read_text(run, paths.SCORER, paths.SCORER_METRICS_FILE)
    return RunInfo(run=run.uri, corpus=corpus, split=config.eval.split,
                   sampling=sampling_text(_recorded_sample_settings(run)),
                   date=datetime.now(UTC).isoformat(timespec="seconds"), config_hash=config_hash(config),
                   scorer_validation=scorer_validation(json.loads(scorer) if scorer else None))


def sampling_text(settings: SampleConfig) -> str:
    """``sample.*`` as the report's header states it: strategy, budget and the strategy's own knobs (the
    ``--ablate sampling`` rows name their own strategy in the models table)."""
    own = {"focused": f"tau {settings.tau:g}, floor {settings.floor} frame(s) per segment",
           "cdf": f"density offset {settings.cdf_offset:g}", "random": f"seed {settings.seed}",
           "uniform": ""}.get(settings.strategy, "")
    return f"{settings.strategy}, budget {settings.budget} frames per video" + (f", {own}" if own else "")


def _read_text(run: RunDir, *parts: str) -> str | None:
    """A small text file of the run, or ``None`` where there is none."""
    if not run.exists(*parts):
        return None
    with run.fs.open_input_stream(run.path(*parts)) as stream:
        return stream.read().decode()


def _safe(name: str) -> str:
    """A model name as its predictions' file stem: ``vlm/focused`` -> ``vlm-focused``."""
    return safe_name(name, "-", "model")
