"""The evaluation report: ROC curves, per-video score timelines and one self-contained HTML page.

:func:`write_report` reads :class:`~dualvad.eval.results.ModelResult` values and writes into a folder

- ``roc_video.png``, ``roc_frame.png``: one ROC curve per model (AUC in the legend,
  :mod:`dualvad.eval.plots`);
- ``timeline_<video>.png``: frame scores over time for a few videos, annotations shaded, sampled
  frames marked;
- ``report.html`` (the template ``eval_report.html``, :mod:`dualvad.pages`), which explains itself: a
  header (:class:`RunInfo`: run, models and where their weights come from, sampling strategy and budget,
  corpus, date, config hash, the scorer's validation AUC), one sentence per metric saying what it measures
  and its chance level (:func:`metric_guide`), the metrics table once (the rows of
  ``results.md``/``results.csv`` plus a note column that flags, e.g., a VLM of random preset weights), the
  decisions at the serving threshold (precision, recall, F1 and a confusion table per model,
  :func:`dualvad.eval.tables.threshold_rows`), the per-category table, the ROC curves, every test video in
  one table (label, each model's video score, the featured model's frame AUC on that video, a link to its
  timeline where one is drawn, :func:`dualvad.eval.tables.video_rows`) and one section per drawn video
  (timeline, thumbnails, the explanation or "none" with the reason). Images are embedded as base64 data
  URIs, CSS inline, no script, no external resource, so the one file can be mailed or archived on its own.

Plain Python; no Ray here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dualvad.eval.metrics import UNDEFINED_ONE_CLASS, auc_text
from dualvad.eval.plots import roc_curves, roc_png, timeline_png
from dualvad.eval.results import ModelResult, Thumbnail, VideoResult, frame_level
from dualvad.eval.tables import (
    CATEGORY_COLUMNS,
    COLUMNS,
    NOTE_COLUMN,
    category_rows,
    grid,
    threshold_counts,
    threshold_rows,
    video_frame_auc,
    video_rows,
)
from dualvad.files import safe_names, write_atomic
from dualvad.pages import render

# threshold_counts is dualvad.eval.tables', named here too for dualvad.pipeline.evaluate
__all__ = ["RunInfo", "featured_model", "metric_guide", "reference_model", "scorer_validation",
           "select_videos", "threshold_counts", "write_report"]

REPORT_NAME = "report.html"
ROC_VIDEO_NAME = "roc_video.png"
ROC_FRAME_NAME = "roc_frame.png"


@dataclass(frozen=True)
class RunInfo:
    """The report's header: where its numbers come from (plain strings, filled in by the evaluate stage)."""

    run: str  # the run directory's URI
    corpus: str  # the corpus folder the run ingested
    split: str  # the corpus split evaluated ("test")
    sampling: str  # strategy and frame budget of RUN/samples, e.g. "focused, 8 frames per video, tau 0.5"
    date: str  # when the report was written, ISO 8601 UTC
    config_hash: str  # dualvad.config.config_hash of the effective config
    scorer_validation: str = ""  # the scorer's validation AUC (see scorer_validation)


@dataclass(frozen=True)
class RocPlot:
    """One ROC figure of the page: ``level`` "video" or "frame", its PNG, a note per model left out."""

    level: str
    png: bytes
    notes: list[str]


@dataclass(frozen=True)
class VideoSection:
    """One drawn video's section: its timeline PNG, its thumbnails highest score first, its frame AUC."""

    video: VideoResult
    name: str  # file-name-safe: timeline_<name>.png, the section's id video-<name>
    png: bytes
    thumbnails: list[Thumbnail]
    frame_auc: str


def write_report(
    out_dir: str | Path,
    models: list[ModelResult],
    title: str = "dualvad evaluation report",
    timeline_videos: int = 8,
    *,
    threshold: float,
    info: RunInfo | None = None,
) -> Path:
    """Write the ROC plots, the timelines and ``report.html`` into ``out_dir`` (created if missing).

    Args:
        out_dir: local folder; existing files of the same names are replaced (each atomically).
        models: the evaluated models, at least one; the metrics table has one row per model, ROC
            curves are drawn for every model, timelines for the first model that looked at frames
            (else the first model), the others overlaid.
        title: the page title.
        timeline_videos: how many videos get a timeline and a section (anomalous first, then normal);
            the table of all videos lists the others.
        threshold: the serving threshold in [0, 1] (a video is called anomalous when its video score is at
            or above it, as the online detector decides): the threshold view's decisions.
        info: the header; ``None`` writes the page without one (it says so).

    Returns:
        The path of ``report.html``.
    """
    if not models:
        raise ValueError("write_report needs at least one ModelResult, got an empty list")
    out = Path(out_dir)
    rocs = [_roc_plot(out, level, models) for level in ("video", "frame")]
    featured = featured_model(models)
    names = dict(zip(*_video_ids_and_names(models), strict=True))
    sections = [_video_section(out, video, names[video.video_id], models, featured)
                for video in select_videos(featured.videos, timeline_videos)]
    drawn = {section.video.video_id for section in sections}
    reference = reference_model(models)
    anomalous = sum(video.is_anomalous for video in reference.videos)
    page = render(
        "eval_report.html", title=title, info=info, models=models, featured=featured,
        split=f"{len(reference.videos)} videos, {anomalous} anomalous", threshold=f"{threshold:g}",
        guide=metric_guide(models, threshold), metrics=grid(models, (*COLUMNS, NOTE_COLUMN)),
        decisions=threshold_rows(models, threshold),
        categories=grid(category_rows(models), CATEGORY_COLUMNS, cls="categories"), rocs=rocs,
        videos=video_rows(models, featured, names, drawn, threshold), limit=timeline_videos,
        undefined=UNDEFINED_ONE_CLASS, sections=sections)
    return Path(write_atomic(out / REPORT_NAME, page.encode("utf-8")))


def _roc_plot(out: Path, level: str, models: list[ModelResult]) -> RocPlot:
    """Draw and write ``roc_<level>.png``."""
    curves, notes = roc_curves(models, level)
    png = roc_png(curves, f"{level}-level ROC")
    write_atomic(out / (ROC_VIDEO_NAME if level == "video" else ROC_FRAME_NAME), png)
    return RocPlot(level, png, notes)


def _video_section(out: Path, video: VideoResult, name: str, models: Sequence[ModelResult],
                   featured: ModelResult) -> VideoSection:
    """Draw and write ``timeline_<name>.png`` (the other models' scores of the video overlaid)."""
    png = timeline_png(video, featured.name, _same_video(models, featured, video.video_id))
    write_atomic(out / f"timeline_{name}.png", png)
    thumbnails = sorted(video.thumbnails, key=lambda thumb: -thumb.score)
    return VideoSection(video, name, png, thumbnails, auc_text(video_frame_auc(video)))


# ------------------------------------------------------------------------------ which videos, which model


def featured_model(models: Sequence[ModelResult]) -> ModelResult:
    """The first model that looked at frames (sampled frames to mark), else the first model."""
    for model in models:
        if any(len(video.sampled_frames) for video in model.videos):
            return model
    return models[0]


def select_videos(videos: Sequence[VideoResult], limit: int) -> list[VideoResult]:
    """Up to ``limit`` videos, anomalous first then normal, each group in its given order."""
    ordered = [v for v in videos if v.is_anomalous] + [v for v in videos if not v.is_anomalous]
    return ordered[: max(limit, 0)]


def _same_video(
    models: Sequence[ModelResult], featured: ModelResult, video_id: str
) -> list[tuple[str, VideoResult]]:
    """The other models' results for ``video_id`` (models that did not score it are absent)."""
    others = []
    for model in models:
        if model is featured:
            continue
        match = next((v for v in model.videos if v.video_id == video_id), None)
        if match is not None:
            others.append((model.name, match))
    return others


def _video_ids_and_names(models: Sequence[ModelResult]) -> tuple[list[str], list[str]]:
    """Every video id any model scored, in order of first appearance, and its file-name-safe name."""
    ids = list(dict.fromkeys(video.video_id for model in models for video in model.videos))
    return ids, safe_names(ids)


# ---------------------------------------------------------------------- what the page explains


def reference_model(models: Sequence[ModelResult]) -> ModelResult:
    """The model that scored the most test videos (the scorer in evaluation: it scores every one), whose
    videos give the test set's class shares."""
    return max(models, key=lambda model: len(model.videos))


def metric_guide(models: Sequence[ModelResult], threshold: float) -> list[tuple[str, str]]:
    """(metric, one sentence saying what it measures and its chance level) for each metric of the metrics
    table and of the threshold view. Chance levels that depend on the test set (AP, precision, F1) are
    computed from :func:`reference_model`'s videos."""
    reference = reference_model(models)
    truth, _ = frame_level(reference)
    frame_share = float(truth.mean()) if truth.size else float("nan")
    video_share = (float(np.mean([v.is_anomalous for v in reference.videos])) if reference.videos
                   else float("nan"))
    all_f1 = 2 * video_share / (1 + video_share)
    return [
        ("Video AUC", "How often an anomalous test video gets a higher video score than a normal one (the "
                      "area under the ROC curve over videos; each model's video score is stated under "
                      "Models). Chance level 0.5; 1.0 ranks every anomalous video above every normal one."),
        ("Frame AUC", "The same area over every frame of every test video, concatenated: a frame takes its "
                      "segment's score and its truth from the temporal annotation. Chance level 0.5."),
        ("Frame AUC (VERA)", "Frame AUC after the steps of VERA's public evaluation script (16-frame "
                             "snippets, refinement over similar snippets, Gaussian smoothing, one decimal, "
                             "frames weighted toward each video's centre). Chance level 0.5."),
        ("Frame AP", "Average precision of the anomalous frames when all frames are ranked by score (the "
                     "XD-Violence metric). Chance level: the share of anomalous frames, "
                     f"{frame_share:.4f} on these test videos."),
        ("Precision", f"Of the videos called anomalous (video score at or above {threshold:g}, the serving "
                      "threshold), the share that are anomalous. Chance level: the share of anomalous test "
                      f"videos, {video_share:.4f}."),
        ("Recall", "Of the anomalous videos, the share called anomalous. A random caller's recall is the "
                   "share of videos it calls anomalous: 0 when it calls none, 1 when it calls all."),
        ("F1", "The harmonic mean of precision and recall. Calling every video anomalous gives "
               f"{all_f1:.4f} here (precision {video_share:.4f}, recall 1)."),
    ]


def scorer_validation(metrics: dict | None) -> str:
    """The header's line on the scorer's training: its exported checkpoint's ``metrics.json`` (``epoch``,
    ``val_loss``, ``val_auc`` ``None`` where the validation videos hold one class, and what it is over:
    ``val_videos``, ``val_anomalous``, ``val_held_out``; runs trained before those keys lack them)."""
    if metrics is None:
        return "not recorded (no RUN/scorer/metrics.json)"
    videos, anomalous = metrics.get("val_videos"), metrics.get("val_anomalous")
    if videos is None or anomalous is None:
        over = "(the validation videos are not recorded)"
    else:
        pairs = anomalous * (videos - anomalous)
        which = ("held-out training videos" if metrics.get("val_held_out", True)
                 else "training videos themselves (too few to hold out both classes)")
        over = f"over {videos} {which}, {anomalous} anomalous: {pairs} anomalous-normal pair(s)"
    return (f"video AUC {auc_text(metrics.get('val_auc'))} {over}; chosen checkpoint: epoch "
            f"{metrics['epoch']}, validation loss {metrics['val_loss']:.4f}")
