"""The evaluation report: ROC curves, per-video score timelines and one self-contained HTML page.

:func:`write_report` reads :class:`~dualvad.eval.results.ModelResult` values and writes into a folder

- ``roc_video.png``, ``roc_frame.png``: one ROC curve per model (AUC in the legend);
- ``timeline_<video>.png``: frame scores over time for a few videos, annotations shaded, sampled
  frames marked;
- ``report.html``, which explains itself: a header (:class:`RunInfo`: run, models and where their weights
  come from, sampling strategy and budget, corpus, date, config hash, the scorer's validation AUC), one
  sentence per metric saying what it measures and its chance level (:func:`metric_guide`), the metrics
  table once (:func:`dualvad.eval.tables.html_table`, the rows of ``results.md``/``results.csv`` plus a
  note column that flags, e.g., a VLM of random preset weights), the decisions at the serving threshold
  (precision, recall, F1 and a confusion table per model, :func:`dualvad.eval.metrics.at_threshold`), the
  per-category table, the ROC curves, every test video in one table (label, each model's video score, the
  featured model's frame AUC on that video, a link to its timeline where one is drawn) and one section per
  drawn video (timeline, thumbnails, the explanation or "none" with the reason). Images are embedded as
  base64 data URIs, CSS inline, no script, no external resource, so the one file can be mailed or
  archived on its own.

Plots use :class:`matplotlib.figure.Figure` directly: no pyplot, so no global figure registry to leak
into and no backend to switch (the PNG canvas is always available). Plain Python; no Ray here.
"""

from __future__ import annotations

import base64
import html
import io
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import roc_auc_score, roc_curve

from dualvad.eval.metrics import (
    UNDEFINED_ONE_CLASS,
    ThresholdCounts,
    at_threshold,
    auc_or_none,
    auc_text,
    concatenate_frames,
    frame_ground_truth,
)
from dualvad.eval.results import ModelResult, Thumbnail, VideoResult
from dualvad.eval.tables import CATEGORY_COLUMNS, COLUMNS, Column, category_rows, html_table
from dualvad.files import safe_names, write_atomic

REPORT_NAME = "report.html"
ROC_VIDEO_NAME = "roc_video.png"
ROC_FRAME_NAME = "roc_frame.png"
_DPI = 100
# PNG metadata: matplotlib writes its version under "Software" by default; dropping it keeps the
# bytes identical across matplotlib versions for identical inputs.
_PNG_METADATA = {"Software": None}
# the featured model is blue, sampled frames orange, annotations red: the others take what is left
_OTHER_COLORS = ("tab:green", "tab:purple", "tab:brown", "tab:gray", "tab:olive", "tab:cyan", "tab:pink")


@dataclass(frozen=True)
class Curve:
    """One model's ROC: ``fpr``/``tpr`` float64 (P,) from :func:`sklearn.metrics.roc_curve`."""

    name: str
    fpr: np.ndarray
    tpr: np.ndarray
    auc: float


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
    out.mkdir(parents=True, exist_ok=True)
    roc_sections = [_roc_section(out, level, models) for level in ("video", "frame")]
    featured = featured_model(models)
    names = dict(zip(*_video_ids_and_names(models), strict=True))
    drawn = select_videos(featured.videos, timeline_videos)
    sections = []
    for video in drawn:
        png = timeline_png(video, featured.name, _same_video(models, featured, video.video_id))
        write_atomic(out / f"timeline_{names[video.video_id]}.png", png)
        sections.append(_video_html(video, names[video.video_id], png, featured))
    parts = {
        "header": _header_html(info, models, threshold),
        "guide": _guide_html(models, threshold),
        "threshold": _threshold_html(models, threshold),
        "all_videos": _all_videos_html(models, featured, names, {v.video_id for v in drawn}, timeline_videos,
                                       threshold),
    }
    page = _page(title, models, roc_sections, featured, sections, parts)
    write_atomic(out / REPORT_NAME, page.encode("utf-8"))
    return out / REPORT_NAME


# ----------------------------------------------------------------------------------------- ROC


def video_level(model: ModelResult) -> tuple[np.ndarray, np.ndarray]:
    """(truth int8 (V,), scores float64 (V,)): one sample per video."""
    truth = np.array([video.is_anomalous for video in model.videos], dtype=np.int8)
    return truth, np.array([video.video_score for video in model.videos], dtype=np.float64)


def frame_level(model: ModelResult) -> tuple[np.ndarray, np.ndarray]:
    """(truth int8 (F,), scores float32 (F,)): all videos' frames concatenated, as the metrics do."""
    if not model.videos:
        return np.zeros(0, dtype=np.int8), np.zeros(0, dtype=np.float32)
    return concatenate_frames((v.segment_scores, v.segment_bounds, v.gt_intervals) for v in model.videos)


def roc_curves(models: Iterable[ModelResult], level: str) -> tuple[list[Curve], list[str]]:
    """Each model's ROC at ``level`` ("video" or "frame"), and a note for each model without one.

    A curve is undefined when the model's samples hold one class only (or none); such a model is
    left out with a note instead of failing the whole report.
    """
    samples = {"video": video_level, "frame": frame_level}[level]
    curves, notes = [], []
    for model in models:
        truth, scores = samples(model)
        if truth.size == 0 or truth.min() == truth.max():
            classes = sorted({int(t) for t in truth})
            notes.append(f"{model.name}: no {level}-level ROC, its {truth.size} samples hold "
                         f"class(es) {classes} only (the curve needs both 0 and 1)")
            continue
        fpr, tpr, _ = roc_curve(truth, scores)
        curves.append(Curve(model.name, fpr, tpr, float(roc_auc_score(truth, scores))))
    return curves, notes


def roc_png(curves: Sequence[Curve], title: str) -> bytes:
    """A 500 x 500 px PNG: one line per curve, chance diagonal, AUC in the legend."""
    fig = Figure(figsize=(5, 5), dpi=_DPI)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], linestyle="--", color="0.6", linewidth=1, label="chance")
    for curve in curves:
        ax.plot(curve.fpr, curve.tpr, linewidth=1.6, label=f"{curve.name} (AUC {curve.auc:.3f})")
    if not curves:
        ax.text(0.5, 0.35, "no model has both classes", ha="center", color="0.3")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false positive rate", ylabel="true positive rate",
           title=title, aspect="equal")
    ax.legend(loc="lower right", fontsize=8)
    return _png(fig)


def _roc_section(out: Path, level: str, models: list[ModelResult]) -> str:
    curves, notes = roc_curves(models, level)
    png = roc_png(curves, f"{level}-level ROC")
    write_atomic(out / (ROC_VIDEO_NAME if level == "video" else ROC_FRAME_NAME), png)
    img = img_tag(png, "image/png", f"{level}-level ROC curves, one per model", id_=f"roc-{level}", cls="roc")
    note_html = "".join(f'<p class="note">{html.escape(note)}</p>' for note in notes)
    return f'<div class="roc-level"><figure>{img}</figure>{note_html}</div>'


# ------------------------------------------------------------------------------------ timelines


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


def timeline_png(
    video: VideoResult, model_name: str, others: Sequence[tuple[str, VideoResult]] = ()
) -> bytes:
    """A 1000 x 280 px PNG of one video's scores against time in seconds.

    The featured model's frame scores as a step line (frame ``i`` spans ``[i, i+1) / fps`` s), the
    annotated ``[start, end)`` frame ranges shaded, its sampled frames as dots at
    ``(sampled_frames / fps, sampled_scores)`` plus ticks on the time axis, and ``others``
    (model name, the same video as that model scored it) as thin lines.
    """
    fig = Figure(figsize=(10, 2.8), dpi=_DPI)
    ax = fig.add_subplot()
    for i, (start, end) in enumerate(video.gt_intervals):
        ax.axvspan(start / video.fps, end / video.fps, color="tab:red", alpha=0.15, linewidth=0,
                   label="annotated anomaly" if i == 0 else None)
    for (name, other), color in zip(others, itertools.cycle(_OTHER_COLORS)):
        ax.stairs(*_frame_steps(other), baseline=None, color=color, linewidth=0.8, label=name)
    ax.stairs(*_frame_steps(video), baseline=None, color="tab:blue", linewidth=1.6, label=model_name)
    if len(video.sampled_frames):
        times = np.asarray(video.sampled_frames) / video.fps
        ax.plot(times, video.sampled_scores, "o", color="tab:orange", markersize=3.5, label="sampled frames")
        # ticks on the time axis show where frames went even when their dots overlap a line
        ax.plot(times, np.zeros_like(times), "|", color="tab:orange", markersize=8,
                transform=ax.get_xaxis_transform(), clip_on=False)
    lo, hi = _score_range(video, others)
    ax.set(xlim=(0, video.num_frames / video.fps), ylim=(lo - 0.05, hi + 0.05), xlabel="time (s)",
           ylabel="score (0 to 1)", title=f"{video.video_id} ({video.label})")
    ax.legend(loc="upper left", fontsize=7, ncols=2, framealpha=0.8)
    fig.tight_layout()
    return _png(fig)


def _frame_steps(video: VideoResult) -> tuple[np.ndarray, np.ndarray]:
    """(frame scores float32 (F,), their edges in seconds float64 (F + 1,)) for ``Axes.stairs``."""
    scores = video.frame_scores()
    return scores, np.arange(len(scores) + 1) / video.fps


def _score_range(video: VideoResult, others: Sequence[tuple[str, VideoResult]]) -> tuple[float, float]:
    """The plotted score range: at least [0, 1], widened so no out-of-range score is hidden."""
    arrays = [video.segment_scores, video.sampled_scores] + [o.segment_scores for _, o in others]
    flat = [np.asarray(a, dtype=np.float64).ravel() for a in arrays]
    values = np.concatenate([*flat, np.array([0.0, 1.0])])
    return float(np.nanmin(values)), float(np.nanmax(values))


# ---------------------------------------------------------------------- what the page explains

#: The metrics table's extra HTML column: what a reader must know about a model first (results.md and the
#: CSV keep :data:`COLUMNS`).
NOTE_COLUMN = Column("note", "Note", lambda model: model.info.warning, numeric=False)


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


def threshold_counts(model: ModelResult, threshold: float) -> ThresholdCounts:
    """The model's video-level decisions ``video_score >= threshold`` against the videos' labels."""
    truth, scores = video_level(model)
    return at_threshold(truth, scores, threshold)


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


def video_frame_auc(video: VideoResult) -> float | None:
    """AUC of one video's frame scores against its annotation; ``None`` where its frames hold one class (a
    normal video, or one annotated throughout)."""
    return auc_or_none(frame_ground_truth(video.num_frames, video.gt_intervals), video.frame_scores())


def _video_ids_and_names(models: Sequence[ModelResult]) -> tuple[list[str], list[str]]:
    """Every video id any model scored, in order of first appearance, and its file-name-safe name."""
    ids = list(dict.fromkeys(video.video_id for model in models for video in model.videos))
    return ids, safe_names(ids)


# ------------------------------------------------------------------------------------------ HTML

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 0.8em 0; }
th, td { border: 1px solid #bbb; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #eee; }
th.num, td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.header th { width: 11em; }
table.confusion caption { font-weight: bold; text-align: left; }
td.called { font-weight: bold; }
.confusions { display: flex; flex-wrap: wrap; gap: 1.5em; }
dl.guide dt { font-weight: bold; margin-top: 0.4em; }
dl.guide dd { margin-left: 1.5em; }
figure { margin: 0.5em 0; }
.roc-row { display: flex; flex-wrap: wrap; gap: 1em; }
.roc-level { max-width: 520px; }
img.timeline { width: 100%; max-width: 1000px; }
.thumbs { display: flex; flex-wrap: wrap; gap: 0.6em; }
.thumbs figure { margin: 0; font-size: 0.8em; }
img.thumbnail { max-height: 120px; display: block; }
.explanation { white-space: pre-wrap; background: #f6f6f6; padding: 0.6em; border-left: 3px solid #999; }
.note, .warning { color: #a33; }
.wide { overflow-x: auto; }
table.videos { font-size: 0.9em; }
.warning { font-weight: bold; }
article.video { border-top: 1px solid #ccc; padding-top: 0.5em; }
"""


def _page(title: str, models: Sequence[ModelResult], roc_sections: Sequence[str], featured: ModelResult,
          video_sections: Sequence[str], parts: dict[str, str]) -> str:
    """The whole page: title, header, the metric guide, the metrics table once, the threshold view, the
    per-category table, the ROC figures, the table of all videos, one section per drawn video."""
    videos = "".join(video_sections) or '<p class="note">no videos to show</p>'
    rows = category_rows(models)
    per_category = (html_table(rows, CATEGORY_COLUMNS, cls="categories") if rows
                    else '<p class="note">no anomaly category among the test videos</p>')
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{_CSS}</style></head><body>\n<h1>{html.escape(title)}</h1>\n"
        f"{parts['header']}\n{parts['guide']}\n"
        f'<section id="metrics"><h2>Metrics</h2>{html_table(models, (*COLUMNS, NOTE_COLUMN))}</section>\n'
        f"{parts['threshold']}\n"
        '<section id="categories"><h2>Per anomaly category</h2><p>Each category\'s videos plus all normal '
        f"test videos.</p>{per_category}</section>\n"
        f'<section id="roc"><h2>ROC curves</h2><div class="roc-row">{"".join(roc_sections)}</div></section>\n'
        f"{parts['all_videos']}\n"
        f'<section id="videos"><h2>Videos, as scored by {html.escape(featured.name)}</h2>\n'
        f"{videos}</section>\n"
        "</body></html>\n"
    )


def _rows(pairs: Sequence[tuple[str, str]]) -> str:
    """``<tr><th>name</th><td>value</td></tr>`` per pair; both are HTML already."""
    return "".join(f"<tr><th>{name}</th><td>{value}</td></tr>" for name, value in pairs)


def _header_html(info: RunInfo | None, models: Sequence[ModelResult], threshold: float) -> str:
    """The run (``info``), the serving threshold and a table of the models: weights, score scales, notes."""
    e = html.escape
    reference = reference_model(models)
    anomalous = sum(video.is_anomalous for video in reference.videos)
    split = f"{len(reference.videos)} videos, {anomalous} anomalous"
    run = (_rows([("Run", e(info.run)), ("Corpus", e(info.corpus)),
                  ("Split", f"{e(info.split)}: {split}"), ("Sampling", e(info.sampling)),
                  ("Serving threshold", f"{threshold:g}: a video is called anomalous when its video score is "
                                        "at or above it, as the online detector decides"),
                  ("Date", e(info.date)), ("Config hash", f"<code>{e(info.config_hash)}</code>"),
                  ("Scorer validation", e(info.scorer_validation or "not given"))])
           if info is not None else
           _rows([("Run", '<span class="note">not given: this page was written without run '
                          "information</span>"), ("Test videos", split),
                  ("Serving threshold", f"{threshold:g}")]))
    model_rows = "".join(
        f"<tr><td>{e(m.name)}</td><td>{e(m.info.weights or 'not stated')}</td>"
        f"<td>{e(m.info.video_score or 'not stated')}</td><td>{e(m.info.frame_score or 'not stated')}</td>"
        f'<td class="warning">{e(m.info.warning)}</td></tr>' for m in models)
    return (f'<section id="run"><h2>Run</h2><table class="header">{run}</table>'
            '<table class="models"><thead><tr><th>Model</th><th>Weights</th><th>Video score</th>'
            f"<th>Frame score</th><th>Note</th></tr></thead><tbody>{model_rows}</tbody></table></section>")


def _guide_html(models: Sequence[ModelResult], threshold: float) -> str:
    items = "".join(f"<dt>{html.escape(name)}</dt><dd>{html.escape(text)}</dd>"
                    for name, text in metric_guide(models, threshold))
    return (f'<section id="guide"><h2>What the metrics measure</h2><dl class="guide">{items}</dl>'
            "<p>n/a: the metric is undefined on these videos (it needs both classes).</p></section>")


def _threshold_html(models: Sequence[ModelResult], threshold: float) -> str:
    """Per model: videos called anomalous, precision, recall, F1; then a confusion table per model."""
    def value(number: float | None, why: str) -> str:
        return f"{number:.4f}" if number is not None else f"undefined ({why})"

    rows, tables = [], []
    for model in models:
        c = threshold_counts(model, threshold)
        name = html.escape(model.name)
        called = c.true_positives + c.false_positives
        rows.append(f'<tr><td>{name}</td><td class="num">{called} of {len(model.videos)}</td>'
                    f'<td class="num">{value(c.precision, "no video called anomalous")}</td>'
                    f'<td class="num">{value(c.recall, "no anomalous video")}</td>'
                    f'<td class="num">{value(c.f1, "no video called or truly anomalous")}</td></tr>')
        tables.append(
            f'<table class="confusion" data-model="{name}"><caption>{name}</caption><thead><tr><th>truth</th>'
            '<th class="num">called anomalous</th><th class="num">called normal</th></tr></thead><tbody>'
            f'<tr><th>anomalous</th><td class="num">{c.true_positives}</td>'
            f'<td class="num">{c.false_negatives}</td></tr>'
            f'<tr><th>normal</th><td class="num">{c.false_positives}</td>'
            f'<td class="num">{c.true_negatives}</td></tr></tbody></table>')
    return (f'<section id="threshold"><h2>Decisions at the serving threshold {threshold:g}</h2>'
            f"<p>A video is called anomalous when its video score is at or above {threshold:g}.</p>"
            '<table class="threshold"><thead><tr><th>Model</th><th class="num">Called anomalous</th>'
            '<th class="num">Precision</th><th class="num">Recall</th><th class="num">F1</th></tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>'
            f'<div class="confusions">{"".join(tables)}</div></section>')


def _all_videos_html(models: Sequence[ModelResult], featured: ModelResult, names: dict[str, str],
                     drawn: set[str], limit: int, threshold: float) -> str:
    """Every test video: label, annotated frames, each model's video score (bold where called anomalous),
    the featured model's frame AUC on it and a link to its timeline, or why there is none."""
    e = html.escape
    by_model = [{video.video_id: video for video in model.videos} for model in models]
    featured_videos = {video.video_id: video for video in featured.videos}
    head = ("<th>Video</th><th>Label</th><th class=\"num\">Annotated frames</th>"
            + "".join(f'<th class="num">{e(m.name)} video score</th>' for m in models)
            + f'<th class="num">{e(featured.name)} frame AUC</th><th>Timeline</th>')
    body = []
    for video_id in names:
        video = next(scored[video_id] for scored in by_model if video_id in scored)
        annotated = sum(end - start for start, end in video.gt_intervals)
        cells = [f"<td>{e(video_id)}</td><td>{e(video.label)}</td>",
                 f'<td class="num">{annotated} of {video.num_frames}</td>']
        for scored in by_model:
            mine = scored.get(video_id)
            if mine is None:
                cells.append('<td class="num note">not scored (a recorded failure)</td>')
            else:
                called = ' called' if mine.video_score >= threshold else ""
                cells.append(f'<td class="num{called}">{mine.video_score:.3f}</td>')
        frame_auc = (auc_text(video_frame_auc(featured_videos[video_id])) if video_id in featured_videos
                     else "not scored")
        cells.append(f'<td class="num">{e(frame_auc)}</td>')
        cells.append(f'<td><a href="#video-{e(names[video_id])}">timeline</a></td>' if video_id in drawn else
                     "<td>none drawn</td>")
        body.append(f'<tr id="row-{e(names[video_id])}">{"".join(cells)}</tr>')
    return (f'<section id="all-videos"><h2>All test videos ({len(names)})</h2>'
            f"<p>Timelines are drawn for {len(drawn)} of {len(names)} videos "
            f"(eval.timeline_videos = {limit}), anomalous ones first. "
            f"Video scores in bold are at or above the serving threshold {threshold:g}. Frame AUC: "
            f"{e(featured.name)}'s frame scores on that video against its annotation "
            f"({UNDEFINED_ONE_CLASS} for a video whose frames hold one class).</p>"
            f'<div class="wide"><table class="videos"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div></section>')


def _video_html(video: VideoResult, name: str, timeline: bytes, model: ModelResult) -> str:
    thumbs = "".join(_thumbnail_html(t, video.fps) for t in sorted(video.thumbnails, key=lambda t: -t.score))
    if video.explanation:
        explanation = f'<div class="explanation">{html.escape(video.explanation)}</div>'
    else:
        why = model.info.no_explanation or "the model gave no text"
        explanation = f'<p class="no-explanation">explanation: none ({html.escape(why)})</p>'
    scale = f" ({html.escape(model.info.video_score)})" if model.info.video_score else ""
    return (
        f'<article class="video" id="video-{name}"><h3>{html.escape(video.video_id)}</h3>'
        f"<p>label: <b>{html.escape(video.label)}</b> &middot; "
        f"video score: <b>{video.video_score:.3f}</b>{scale} &middot; "
        f"frame AUC: {html.escape(auc_text(video_frame_auc(video)))}</p>"
        + img_tag(timeline, "image/png", f"score timeline of {video.video_id}", id_=f"timeline-{name}",
               cls="timeline")
        + (f'<div class="thumbs">{thumbs}</div>' if thumbs else "")
        + explanation
        + "</article>\n"
    )


def _thumbnail_html(thumb: Thumbnail, fps: float) -> str:
    caption = (f"frame {thumb.frame_index} &middot; {thumb.frame_index / fps:.2f} s &middot; "
               f"score {thumb.score:.3f}")
    img = img_tag(thumb.jpeg, "image/jpeg", f"frame {thumb.frame_index}", cls="thumbnail")
    return f"<figure>{img}<figcaption>{caption}</figcaption></figure>"


def img_tag(data: bytes, mime: str, alt: str, *, id_: str | None = None, cls: str | None = None) -> str:
    attrs = (f' id="{html.escape(id_)}"' if id_ else "") + (f' class="{cls}"' if cls else "")
    encoded = base64.b64encode(data).decode("ascii")
    return f'<img{attrs} alt="{html.escape(alt)}" src="data:{mime};base64,{encoded}">'


# ------------------------------------------------------------------------------------------- I/O


def _png(fig: Figure) -> bytes:
    """The figure as PNG bytes. A pyplot-free Figure is freed with its last reference, and there is
    no figure registry to close it from."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_DPI, metadata=_PNG_METADATA)
    fig.clear()  # drop artists now rather than at the next garbage collection
    return buffer.getvalue()
