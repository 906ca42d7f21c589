"""The evaluation report: ROC curves, per-video score timelines and one self-contained HTML page.

:func:`write_report` reads :class:`~dualvad.eval.results.ModelResult` values and writes into a folder

- ``roc_video.png``, ``roc_frame.png``: one ROC curve per model (AUC in the legend);
- ``timeline_<video>.png``: frame scores over time for a few videos, annotations shaded, sampled
  frames marked;
- ``report.html``: the metrics table once (:func:`dualvad.eval.tables.html_table`, built from each model's
  ``metrics``, the same rows as ``results.md``/``results.csv``), the per-category table (each model's
  ``categories``: a category's videos plus all normal ones) and everything above embedded as base64
  data URIs, inline CSS, no script, no external resource, so the one file can be mailed or archived
  on its own.

Plots use :class:`matplotlib.figure.Figure` directly: no pyplot, so no global figure registry to leak
into and no backend to switch (the PNG canvas is always available). Plain Python; no Ray here.
"""

from __future__ import annotations

import base64
import html
import io
import itertools
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import roc_auc_score, roc_curve

from dualvad.eval.metrics import concatenate_frames
from dualvad.eval.results import ModelResult, Thumbnail, VideoResult
from dualvad.eval.tables import CATEGORY_COLUMNS, category_rows, html_table

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


def write_report(
    out_dir: str | Path,
    models: list[ModelResult],
    title: str = "dualvad evaluation report",
    timeline_videos: int = 8,
) -> Path:
    """Write the ROC plots, the timelines and ``report.html`` into ``out_dir`` (created if missing).

    Args:
        out_dir: local folder; existing files of the same names are replaced (each atomically).
        models: the evaluated models, at least one; the metrics table has one row per model, ROC
            curves are drawn for every model, timelines for the first model that looked at frames
            (else the first model), the others overlaid.
        title: the page title.
        timeline_videos: how many videos get a timeline and a section (anomalous first, then normal).

    Returns:
        The path of ``report.html``.
    """
    if not models:
        raise ValueError("write_report needs at least one ModelResult, got an empty list")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    roc_sections = [_roc_section(out, level, models) for level in ("video", "frame")]
    featured = featured_model(models)
    videos = select_videos(featured.videos, timeline_videos)
    names = safe_names([video.video_id for video in videos])
    sections = []
    for video, name in zip(videos, names, strict=True):
        png = timeline_png(video, featured.name, _same_video(models, featured, video.video_id))
        _write_atomic(out / f"timeline_{name}.png", png)
        sections.append(_video_html(video, name, png))
    page = _page(title, models, roc_sections, featured, sections)
    _write_atomic(out / REPORT_NAME, page.encode("utf-8"))
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
    _write_atomic(out / (ROC_VIDEO_NAME if level == "video" else ROC_FRAME_NAME), png)
    img = _img(png, "image/png", f"{level}-level ROC curves, one per model", id_=f"roc-{level}", cls="roc")
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


def safe_names(video_ids: Sequence[str]) -> list[str]:
    """File-name-safe, unique stems for video ids (ids are often relative paths with ``/``)."""
    names: list[str] = []
    for video_id in video_ids:
        base = re.sub(r"[^A-Za-z0-9._-]+", "_", video_id).strip("._") or "video"
        name, n = base, 1
        while name in names:  # two ids may sanitise to one name ("a/b", "a_b"): keep both files
            n += 1
            name = f"{base}_{n}"
        names.append(name)
    return names


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
           ylabel="score", title=f"{video.video_id} ({video.label})")
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


# ------------------------------------------------------------------------------------------ HTML

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 0.8em 0; }
th, td { border: 1px solid #bbb; padding: 0.25em 0.6em; text-align: left; }
th { background: #eee; }
th.num, td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 0.5em 0; }
.roc-row { display: flex; flex-wrap: wrap; gap: 1em; }
.roc-level { max-width: 520px; }
img.timeline { width: 100%; max-width: 1000px; }
.thumbs { display: flex; flex-wrap: wrap; gap: 0.6em; }
.thumbs figure { margin: 0; font-size: 0.8em; }
img.thumbnail { max-height: 120px; display: block; }
.explanation { white-space: pre-wrap; background: #f6f6f6; padding: 0.6em; border-left: 3px solid #999; }
.note { color: #a33; }
article.video { border-top: 1px solid #ccc; padding-top: 0.5em; }
"""


def _page(title: str, models: Sequence[ModelResult], roc_sections: Sequence[str], featured: ModelResult,
          video_sections: Sequence[str]) -> str:
    """The whole page: title, the metrics table once, the per-category table, the ROC figures, one section
    per video."""
    videos = "".join(video_sections) or '<p class="note">no videos to show</p>'
    rows = category_rows(models)
    per_category = (html_table(rows, CATEGORY_COLUMNS, cls="categories") if rows
                    else '<p class="note">no anomaly category among the test videos</p>')
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{_CSS}</style></head><body>\n<h1>{html.escape(title)}</h1>\n"
        f'<section id="metrics"><h2>Metrics</h2>{html_table(models)}</section>\n'
        '<section id="categories"><h2>Per anomaly category</h2><p>Each category\'s videos plus all normal '
        f"test videos.</p>{per_category}</section>\n"
        f'<section id="roc"><h2>ROC curves</h2><div class="roc-row">{"".join(roc_sections)}</div></section>\n'
        f'<section id="videos"><h2>Videos, as scored by {html.escape(featured.name)}</h2>\n'
        f"{videos}</section>\n"
        "</body></html>\n"
    )


def _video_html(video: VideoResult, name: str, timeline: bytes) -> str:
    thumbs = "".join(_thumbnail_html(t, video.fps) for t in sorted(video.thumbnails, key=lambda t: -t.score))
    explanation = (f'<div class="explanation">{html.escape(video.explanation)}</div>'
                   if video.explanation else "")
    return (
        f'<article class="video" id="video-{name}"><h3>{html.escape(video.video_id)}</h3>'
        f"<p>label: <b>{html.escape(video.label)}</b> &middot; "
        f"video score: <b>{video.video_score:.3f}</b></p>"
        + _img(timeline, "image/png", f"score timeline of {video.video_id}", id_=f"timeline-{name}",
               cls="timeline")
        + (f'<div class="thumbs">{thumbs}</div>' if thumbs else "")
        + explanation
        + "</article>\n"
    )


def _thumbnail_html(thumb: Thumbnail, fps: float) -> str:
    caption = (f"frame {thumb.frame_index} &middot; {thumb.frame_index / fps:.2f} s &middot; "
               f"score {thumb.score:.3f}")
    img = _img(thumb.jpeg, "image/jpeg", f"frame {thumb.frame_index}", cls="thumbnail")
    return f"<figure>{img}<figcaption>{caption}</figcaption></figure>"


def _img(data: bytes, mime: str, alt: str, *, id_: str | None = None, cls: str | None = None) -> str:
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


def _write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary name, then rename: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)
