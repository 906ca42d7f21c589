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
  (:data:`dualvad.eval.scoring.SERVING_THRESHOLD`); ``metrics.json`` keeps the same decisions
  (``serving_threshold``, ``at_threshold``; the verdict row's at its own fitted threshold).
- ``RUN/eval/verdict.json``: the verdict fitted on the scorer's validation videos, which ``dualvad detect``
  and serve answer with, and its ``verdict`` row in every table (:mod:`dualvad.pipeline.evaluate_verdict`).
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
import logging
import time
from collections.abc import Set
from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dualvad import paths
from dualvad import schema as S
from dualvad.config import DualVADConfig, SampleConfig
from dualvad.corpus.layout import UNLABELLED
from dualvad.eval.results import (
    ModelInfo,
    ModelResult,
    Thumbnail,
    VideoResult,
    category_metrics,
    length_mismatches,
    model_metrics,
)
from dualvad.eval.scoring import segment_scores_from_samples, video_score_from_clips
from dualvad.eval.tables import results_markdown
from dualvad.eval.verdict import Verdict, scorer_only
from dualvad.pipeline.evaluate_models import EvaluationError, ModelSpec, model_identity, model_specs, vlm_info
from dualvad.pipeline.evaluate_outputs import (
    failure_rows,
    snippet_ground_truth,
    write_model_card,
    write_outputs,
)
from dualvad.pipeline.evaluate_predict import model_predictions
from dualvad.pipeline.evaluate_verdict import (
    fit_run_verdict,
    scorer_picked_on_validation,
    validation_ids,
    verdict_result,
    verdict_spec,
    write_verdict,
)
from dualvad.pipeline.sample import present_columns, sample_videos, segments_with_scores
from dualvad.rundir import RunDir, open_run
from dualvad.stages.recorded import recorded_decode_window, recorded_sample_settings
from dualvad.stages.records import read_input
from dualvad.stages.registry import stage_named
from dualvad.stages.runner import Skipped, StageContext, run_stage
from dualvad.stages.settings import section

log = logging.getLogger(__name__)

SCORER_ROW = "scorer"


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
    snippets: int | None = None  # T of its feature files; None: decoded from its video


def run_evaluate(config: DualVADConfig, force: bool = False) -> EvalSummary | Skipped:
    """Evaluate the scorer and the VLM model(s) ``eval`` names on the ``eval.split`` videos, through the
    stage runner (inputs: segments, scores, samples and the models)."""
    run, settings = open_run(config.run), config.eval
    specs = model_specs(run, settings, recorded_sample_settings(run).strategy)
    own = paths.FINETUNE if any(spec.run_uri == run.uri for spec in specs) else None
    declared = stage_named("evaluate")  # and the run's own fine-tuned model when it is evaluated
    stage = dataclasses.replace(declared, inputs=declared.inputs + ((own,) if own else ()))
    stage_settings = {"eval": section(settings, "workers", "cpus_per_worker"),
                      "image_size": config.benchmarks.image_size,
                      "clip_frames": config.benchmarks.clip_frames,
                      "jpeg_quality": config.benchmarks.jpeg_quality}
    external = {spec.name: model_identity(spec) for spec in specs if spec.run_uri != run.uri}
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
    weights = run.path(paths.SCORER, paths.SCORER_MODEL_DIR)
    results = [_scorer_result(videos, weights)]
    failures: list[dict] = []
    val_ids, why_none = validation_ids(run)
    strategy = recorded_sample_settings(run).strategy
    chosen = verdict_spec(specs, strategy) if specs else None
    samples = _test_samples(run, settings.split, set(val_ids)) if specs else {}
    test_ids = {v.video_id for v in videos}
    val_predictions: list[dict] = []
    for spec in specs:
        # The verdict's VLM row also judges the validation videos (its fit's inputs), on the run's frames.
        extra = set(val_ids) - test_ids if spec is chosen and spec.strategy == strategy else set()
        rows, unserved = _frames_for(context, spec, {k: v for k, v in samples.items()
                                                     if k in test_ids | extra}, table)
        predictions = model_predictions(context, config, spec, rows, test_ids | extra, unserved)
        failures += [row for row in predictions if row[S.ERROR] is not None]
        results.append(_vlm_result(spec.name, videos, [p for p in predictions if p[S.VIDEO_ID] in test_ids],
                                   vlm_info(spec)))
        val_predictions += [p for p in predictions if p[S.VIDEO_ID] in extra]
    if chosen is None:  # eval.ablate=scorer: the verdict is the scorer alone (the VLM's weight is 0)
        verdict = scorer_only("eval.ablate=scorer: no VLM was evaluated; the scorer alone at threshold 0.5")
        results.append(verdict_result(verdict, results[0], results[0]))
    else:
        verdict = _fit_verdict(run, weights, chosen, sorted(set(val_ids) - test_ids), why_none,
                               val_predictions)
        results.append(verdict_result(verdict, results[0], results[1 + specs.index(chosen)]))
    context.record_failures(failure_rows(failures))
    mismatches = length_mismatches(results[0].videos)
    warn_length_mismatches(mismatches)
    undefined = {}
    for result in results:
        result.metrics, undefined[result.name] = model_metrics(result.videos, features, vera,
                                                               settings.snippet_count)
        result.categories = category_metrics(result.videos, features, vera, settings.snippet_count)
        for metric, reason in undefined[result.name].items():
            log.warning("evaluate: %s %s is undefined: %s", result.name, metric, reason)
    snippet_ground_truth(context.out, results, settings)
    markdown = results_markdown(results, mismatches)
    report = write_outputs(context, config, results, markdown, undefined, mismatches, verdict)
    write_verdict(context.out, verdict)
    write_model_card(context.out, specs, results, settings.split)
    return EvalSummary(tuple(r.name for r in results), len(videos), len(failures), markdown,
                       time.perf_counter() - started, report)


def warn_length_mismatches(mismatches: dict[str, tuple[int, int]]) -> None:
    """One warning per video whose annotation file states another frame count than the decoder found
    (``video id -> (decoded, annotated)``); they are also kept in metrics.json and results.md."""
    for video_id, (decoded, annotated) in sorted(mismatches.items()):
        log.warning("evaluate: %s: the annotation gives %d frames, the decoder found %d; the VERA protocol "
                    "uses the annotation's %d", video_id, annotated, decoded, annotated)


def _test_samples(run: RunDir, split: str, also: Set[str] = frozenset()) -> dict[str, dict]:
    """``RUN/samples`` rows of the labelled ``split`` videos and of the videos ``also`` names, by video id."""
    table = read_input(run, paths.SAMPLES, unique=(S.VIDEO_ID,))
    if table is not None:
        labelled = pc.not_equal(table[S.LABEL], UNLABELLED)  # as _test_table: metrics need labels
        wanted = pc.or_(pc.and_(pc.equal(table[S.SPLIT], split), labelled),
                        pc.is_in(table[S.VIDEO_ID], pa.array(sorted(also), pa.string())))
        table = table.filter(wanted)
    rows = [] if table is None else table.to_pylist()
    return {row[S.VIDEO_ID]: row for row in rows}


def _fit_verdict(run: RunDir, weights: str, spec: ModelSpec, val_ids: list[str], why_none: str,
                 predictions: list[dict]) -> Verdict:
    """The verdict fitted on the validation videos ``val_ids`` (the scorer's scores of them, and ``spec``'s
    ``predictions`` of them)."""
    if not val_ids or not any(row[S.ERROR] is None for row in predictions):
        return fit_run_verdict([], [], spec, why_none)
    picked = scorer_picked_on_validation(run)
    table = segments_with_scores(run, extra_columns=(S.FEATURE,))
    held = _test_videos(table.filter(pc.is_in(table[S.VIDEO_ID], pa.array(val_ids, pa.string()))))
    scorer = _scorer_result(held, weights).videos
    return fit_run_verdict(scorer, _vlm_result(spec.name, held, predictions, ModelInfo()).videos, spec,
                           why_none, picked)


def _frames_for(context: StageContext, spec: ModelSpec, samples: dict[str, dict],
                table: pa.Table) -> tuple[list[dict], dict[str, str]]:
    """(the sample rows ``spec`` is evaluated on, sorted by video; why the other test videos have none).

    The strategy of ``RUN/samples`` reads its rows; another strategy (``--ablate sampling``) is sampled
    here with the recorded settings and kept in ``RUN/eval/samples/<strategy>.parquet``."""
    recorded = recorded_sample_settings(context.run)
    if spec.strategy == recorded.strategy:
        return [samples[key] for key in sorted(samples)], {}
    parts = (paths.EVAL_SAMPLES_DIR, f"{spec.strategy}.parquet")
    rows, failures = sample_videos(table.drop_columns([S.FEATURE]), SampleConfig(
        **{**asdict(recorded), "strategy": spec.strategy}), recorded_decode_window(context.run))
    context.out.write_table(pa.Table.from_pylist(rows, schema=S.SAMPLES_SCHEMA), *parts)
    return rows, {row[S.VIDEO_ID]: row[S.REASON] for row in failures}


def _test_table(run: RunDir, split: str) -> pa.Table:
    """Segments + scorer scores (+ features, + annotated frame counts where the segments hold them: runs
    ingested before that column have none) of the labelled ``split`` videos, sorted by (video, segment).

    Unlabelled videos are left out (the metrics need labels); a split of unlabelled videos only is an
    error that says how to score them instead."""
    extra = (S.FEATURE, *present_columns(run, paths.SEGMENTS, (S.ANNOTATED_FRAMES, S.SNIPPETS)))
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
    snippets = columns.get(S.SNIPPETS, [None] * len(ids))
    for first, last in zip(starts, [*starts[1:], len(ids)], strict=True):
        flat = columns[S.GT_INTERVALS][first] or []
        videos.append(TestVideo(
            ids[first], columns[S.LABEL][first], int(columns[S.NUM_FRAMES][first]),
            float(columns[S.FPS][first]),
            np.stack([columns[S.START_FRAME][first:last], columns[S.END_FRAME][first:last]], axis=1),
            np.asarray(columns[S.FEATURE][first:last], dtype=np.float32),
            np.asarray(columns[S.SCORE][first:last], dtype=np.float32),
            [(int(flat[i]), int(flat[i + 1])) for i in range(0, len(flat), 2)], annotated[first],
            snippets[first]))
    return videos


def _scorer_result(videos: list[TestVideo], weights: str) -> ModelResult:
    """The baseline row: the segment scorer's own scores; video score = its highest segment score."""
    info = ModelInfo(weights=weights, video_score="the highest segment score, in [0, 1]",
                     frame_score="its segment's scorer score (sigmoid), in [0, 1]",
                     no_explanation="the segment scorer gives no text")
    return ModelResult(SCORER_ROW, [
        VideoResult(v.video_id, v.label, v.num_frames, v.fps, v.gt_intervals, v.bounds, v.scores,
                    float(v.scores.max()), annotated_frames=v.annotated_frames, snippets=v.snippets)
        for v in videos], info=info)


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
            frames, scores, row[S.EXPLANATION], thumbs, video.annotated_frames, video.snippets))
    if not results:
        errors = [row[S.ERROR] for row in predictions if row[S.ERROR] is not None]
        raise EvaluationError(f"{name}: no test video could be evaluated ({len(errors)} failures), e.g. "
                              f"{errors[0] if errors else 'no predictions'}")
    return ModelResult(name, results, info=info)
