"""What the evaluate stage writes (:mod:`dualvad.pipeline.evaluate`) besides the predictions: metrics, tables,
the report, the evaluated model's card, the failures."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow.fs as pafs
import yaml

from dualvad import paths
from dualvad import schema as S
from dualvad.config import DualVADConfig, EvalConfig, SampleConfig, config_hash
from dualvad.corpus.layout import is_anomaly_label
from dualvad.eval.results import ModelResult, snippet_videos
from dualvad.eval.scoring import SERVING_THRESHOLD
from dualvad.eval.snippet_protocol import (
    REFERENCE,
    SNIPPET,
    read_ground_truth,
    snippet_curves,
    snippet_frame_auc,
    write_ground_truth,
)
from dualvad.eval.tables import CATEGORY_COLUMNS, category_rows, csv_table, decision_threshold
from dualvad.eval.verdict import Verdict
from dualvad.pipeline.evaluate_models import EvaluationError, ModelSpec
from dualvad.pipeline.evaluate_verdict import VERDICT_ROW, verdict_metrics
from dualvad.rundir import RunDir, open_run
from dualvad.stages.recorded import recorded_sample_settings
from dualvad.stages.runner import StageContext

if TYPE_CHECKING:  # the report (matplotlib) is imported when the outputs are written
    from dualvad.eval.report import RunInfo

def write_model_card(out: RunDir, specs: list[ModelSpec], results: list[ModelResult], split: str) -> None:
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


def failure_rows(failures: list[dict]) -> list[dict]:
    """Prediction failures as rows of the failures table (one per model and video)."""
    return [{S.VIDEO_ID: row[S.VIDEO_ID], S.VIDEO_PATH: None, S.REASON: f"{row[S.MODEL]}: {row[S.ERROR]}"}
            for row in failures]


def write_outputs(context: StageContext, config: DualVADConfig, results: list[ModelResult], markdown: str,
                   undefined: dict[str, dict[str, str]], mismatches: dict[str, tuple[int, int]],
                   verdict: Verdict) -> str:
    """metrics.json (with why a metric is undefined, and the verdict with its test decisions),
    results.md/.csv, results_categories.csv and the report into the stage's output; returns the report's
    published path. The verdict's row is decided at its fitted threshold, the others at the serving one."""
    from dualvad.eval.report import threshold_counts, write_report

    out = context.out
    decisions = {r.name: asdict(threshold_counts(r, decision_threshold(r, SERVING_THRESHOLD)))
                 for r in results}
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
               "warnings": {r.name: r.info.warning for r in results if r.info.warning},
               VERDICT_ROW: verdict_metrics(verdict, next(r for r in results if r.name == VERDICT_ROW))}
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
                   sampling=sampling_text(recorded_sample_settings(run)),
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


def snippet_ground_truth(out: RunDir, results: list[ModelResult], settings: EvalConfig) -> None:
    """Write the 16-frame protocol's ground truth of the scorer row's test videos as the reference
    repositories' ``.npy`` (:data:`paths.SNIPPET_GT_FILE`) with its videos, offsets and lengths in order
    (:data:`paths.SNIPPET_GT_VIDEOS_FILE`). With ``eval.snippet_gt_file``, every row over those same videos
    is scored against that file instead (a row over other videos gets ``None``: it does not fit).

    Raises:
        EvaluationError: the file does not fit the test videos (its length, named with ours).
    """
    videos = snippet_videos(results[0].videos, settings.snippet_count)
    truth, _ = snippet_curves(videos)
    lengths = [SNIPPET * video.snippets for video in videos]
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(int).tolist() if lengths else []
    listing = [{"video_id": v.video_id, "offset": offset, "frames": frames, "snippets": s.snippets}
               for v, s, offset, frames in zip(results[0].videos, videos, offsets, lengths, strict=True)]
    with tempfile.TemporaryDirectory(prefix="dualvad-gt-") as local:
        write_ground_truth(os.path.join(local, paths.SNIPPET_GT_FILE), truth)
        out.write_bytes(Path(local, paths.SNIPPET_GT_FILE).read_bytes(), paths.SNIPPET_GT_FILE)
    out.write_text(json.dumps({"reference": REFERENCE, "snippet_count": settings.snippet_count,
                               "videos": listing}, indent=2), paths.SNIPPET_GT_VIDEOS_FILE)
    if not settings.snippet_gt_file:
        return
    given = read_ground_truth(settings.snippet_gt_file)
    if len(given) != len(truth):
        raise EvaluationError(f"eval.snippet_gt_file={settings.snippet_gt_file} holds {len(given)} frames, "
                              f"the {len(videos)} test videos {len(truth)} (16 T each, in the order of "
                              f"{paths.SNIPPET_GT_VIDEOS_FILE}): another video list, order or length "
                              "convention (eval.snippet_count)")
    ids = [video.video_id for video in results[0].videos]
    for result in results:
        same = [video.video_id for video in result.videos] == ids
        result.metrics["frame_auc_16"] = (
            snippet_frame_auc(snippet_videos(result.videos, settings.snippet_count), given) if same else None)
