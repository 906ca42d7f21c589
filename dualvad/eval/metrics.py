"""Video- and frame-level metrics (plain protocol); scikit-learn computes every curve.

Frame-level: each video's segment scores are repeated to its frames, ground truth comes from
its temporal annotation (half-open ``[start, end)`` frame ranges), and one ROC is computed
over all test frames of all videos concatenated (the WSVAD convention).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score


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
