"""Video- and frame-level metrics (plain protocol); scikit-learn computes every curve.

Frame-level: each video's segment scores are repeated to its frames, ground truth comes from
its temporal annotation (half-open ``[start, end)`` frame ranges), and one ROC is computed
over all test frames of all videos concatenated (the WSVAD convention).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import (
    average_precision_score,
    confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
)


def segment_scores_to_frames(scores: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Repeat each segment's score over its frames.

    Args:
        scores: float (K,) segment scores.
        bounds: int (K, 2) ``[start, end)`` frame ranges covering ``0 .. num_frames``.

    Returns:
        float32 (num_frames,) frame scores.
    """
    spans = (bounds[:, 1] - bounds[:, 0]).astype(np.int64)
    return np.repeat(np.asarray(scores, dtype=np.float32), spans)


def frame_ground_truth(num_frames: int, intervals: Sequence[tuple[int, int]]) -> np.ndarray:
    """int8 (num_frames,): 1 inside any annotated ``[start, end)`` range, else 0."""
    truth = np.zeros(num_frames, dtype=np.int8)
    for start, end in intervals:
        truth[max(start, 0) : min(end, num_frames)] = 1
    return truth


def require_both_classes(truth: np.ndarray, what: str) -> None:
    """Raise ValueError naming ``what`` when ``truth`` (0/1 labels) holds only one class."""
    if truth.min() == truth.max():
        raise ValueError(f"{what}: AUC needs both normal and anomalous samples, got only class "
                         f"{int(truth[0])} in {len(truth)} samples; evaluate on a test set with both")


def video_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """AUC-ROC over videos: labels (N,) 0/1, scores (N,) any real values."""
    labels = np.asarray(labels)
    require_both_classes(labels, "video-level AUC")
    return float(roc_auc_score(labels, scores))


#: How an AUC on samples of one class (or none) reads: undefined, never 0.0.
UNDEFINED_ONE_CLASS = "undefined (one class)"


def auc_text(value: float | None) -> str:
    """An AUC as people read it: 4 decimals, or :data:`UNDEFINED_ONE_CLASS` for ``None`` (or NaN)."""
    return UNDEFINED_ONE_CLASS if value is None or math.isnan(value) else f"{value:.4f}"


def auc_or_none(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """AUC-ROC of 0/1 ``labels`` (N,) against ``scores`` (N,), or ``None`` where it is undefined: labels
    of one class only (or none). Undefined is not 0.0 (the worst ranking) nor 0.5 (chance): say so."""
    labels = np.asarray(labels)
    if labels.size == 0 or labels.min() == labels.max():
        return None
    return float(roc_auc_score(labels, scores))


@dataclass(frozen=True)
class ThresholdCounts:
    """Decisions ``score >= threshold`` against 0/1 truth: the confusion counts, and precision, recall and
    F1 of the anomalous class (``None`` where undefined: precision with no positive decision, recall with
    no anomalous sample)."""

    threshold: float
    true_positives: int
    false_positives: int
    false_negatives: int
    true_negatives: int
    precision: float | None
    recall: float | None
    f1: float | None


def at_threshold(labels: np.ndarray, scores: np.ndarray, threshold: float) -> ThresholdCounts:
    """:class:`ThresholdCounts` of calling a sample anomalous when its score (N,) is ``>= threshold``
    (the detector's rule), against ``labels`` (N,) 0/1; scikit-learn counts and scores."""
    labels = np.asarray(labels, dtype=np.int8)
    decisions = (np.asarray(scores, dtype=np.float64) >= threshold).astype(np.int8)
    tn, fp, fn, tp = confusion_matrix(labels, decisions, labels=[0, 1]).ravel()
    precision, recall, f1, _ = precision_recall_fscore_support(
        labels, decisions, labels=[0, 1], pos_label=1, average="binary", zero_division=np.nan)

    def defined(value: float) -> float | None:
        return None if math.isnan(value) else float(value)

    return ThresholdCounts(float(threshold), int(tp), int(fp), int(fn), int(tn), defined(precision),
                           defined(recall), defined(f1))


def concatenate_frames(
    videos: Iterable[tuple[np.ndarray, np.ndarray, Sequence[tuple[int, int]]]],
) -> tuple[np.ndarray, np.ndarray]:
    """All videos' (frame truth, frame scores) concatenated.

    Args:
        videos: (segment scores (K,), bounds (K, 2), annotated intervals) per video.
    """
    truths, scores = [], []
    for segment_scores, bounds, intervals in videos:
        frame_scores = segment_scores_to_frames(segment_scores, bounds)
        truths.append(frame_ground_truth(len(frame_scores), intervals))
        scores.append(frame_scores)
    return np.concatenate(truths), np.concatenate(scores)


def frame_auc(videos: Iterable[tuple[np.ndarray, np.ndarray, Sequence[tuple[int, int]]]]) -> float:
    """Frame-level AUC-ROC over the concatenation of all videos' frames (see module docstring)."""
    truth, scores = concatenate_frames(videos)
    require_both_classes(truth, "frame-level AUC")
    return float(roc_auc_score(truth, scores))


def frame_ap(videos: Iterable[tuple[np.ndarray, np.ndarray, Sequence[tuple[int, int]]]]) -> float:
    """Frame-level average precision (the XD-Violence metric) over the concatenation."""
    truth, scores = concatenate_frames(videos)
    require_both_classes(truth, "frame-level AP")
    return float(average_precision_score(truth, scores))
