"""The evaluation report's plots as PNG bytes: ROC curves (:func:`roc_png`) and one video's score timeline
(:func:`timeline_png`, also drawn by ``dualvad detect --report``).

Plots use :class:`matplotlib.figure.Figure` directly: no pyplot, so no global figure registry to leak
into and no backend to switch (the PNG canvas is always available). Plain Python; no Ray here.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import roc_auc_score, roc_curve

from dualvad.eval.results import ModelResult, VideoResult, frame_level, video_level

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


def _png(fig: Figure) -> bytes:
    """The figure as PNG bytes. A pyplot-free Figure is freed with its last reference, and there is
    no figure registry to close it from."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_DPI, metadata=_PNG_METADATA)
    fig.clear()  # drop artists now rather than at the next garbage collection
    return buffer.getvalue()
