"""Metrics: exact values on hand-made inputs, and equality with scikit-learn on random ones."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from dualvad.eval.metrics import (
    ThresholdCounts,
    at_threshold,
    auc_or_none,
    auc_text,
    concatenate_frames,
    frame_ap,
    frame_auc,
    frame_ground_truth,
    segment_scores_to_frames,
    video_auc,
)


def test_segment_scores_repeat_to_frames_exactly():
    bounds = np.array([[0, 2], [2, 5], [5, 6]])
    np.testing.assert_array_equal(segment_scores_to_frames(np.array([0.1, 0.5, 0.9]), bounds),
                                  np.array([0.1, 0.1, 0.5, 0.5, 0.5, 0.9], dtype=np.float32))


def test_frame_ground_truth_half_open():
    np.testing.assert_array_equal(frame_ground_truth(8, [(1, 3), (6, 20)]), [0, 1, 1, 0, 0, 0, 1, 1])
    np.testing.assert_array_equal(frame_ground_truth(3, []), [0, 0, 0])


def test_frame_auc_hand_computed():
    # video A: frames 0-3, anomaly [2, 4), segment scores 0.2 | 0.8 -> perfect ranking
    # video B: frames 0-1, normal, one segment scored 0.5
    videos = [(np.array([0.2, 0.8]), np.array([[0, 2], [2, 4]]), [(2, 4)]),
              (np.array([0.5]), np.array([[0, 2]]), [])]
    truth, scores = concatenate_frames(videos)
    np.testing.assert_array_equal(truth, [0, 0, 1, 1, 0, 0])
    assert frame_auc(videos) == 1.0
    # make B's normal frames outrank one anomaly: positives {0.8, 0.8}, negatives {0.2, 0.2, 0.9, 0.9}
    videos[1] = (np.array([0.9]), np.array([[0, 2]]), [])
    assert frame_auc(videos) == pytest.approx(0.5)


def test_metrics_equal_sklearn_on_random_inputs():
    rng = np.random.default_rng(0)
    videos, labels, video_scores = [], [], []
    for _ in range(20):
        frames = int(rng.integers(40, 90))
        edges = np.linspace(0, frames, 9).astype(int)
        bounds = np.stack([edges[:-1], edges[1:]], axis=1)
        start = int(rng.integers(0, frames - 10))
        intervals = [(start, start + int(rng.integers(1, 10)))] if rng.random() < 0.5 else []
        scores = rng.random(8)
        videos.append((scores, bounds, intervals))
        labels.append(int(bool(intervals)))
        video_scores.append(scores.max())
    truth = np.concatenate([frame_ground_truth(b[-1, 1], iv) for _, b, iv in videos])
    frame_scores = np.concatenate([np.repeat(s, b[:, 1] - b[:, 0]) for s, b, _ in videos])
    assert frame_auc(videos) == pytest.approx(roc_auc_score(truth, frame_scores), abs=1e-12)
    assert frame_ap(videos) == pytest.approx(average_precision_score(truth, frame_scores), abs=1e-12)
    assert video_auc(np.array(labels), np.array(video_scores)) == roc_auc_score(labels, video_scores)


def test_one_class_is_a_clear_error():
    with pytest.raises(ValueError, match="both normal and anomalous"):
        video_auc(np.array([1, 1]), np.array([0.2, 0.3]))


def test_auc_of_one_class_is_undefined_not_zero():
    assert auc_or_none(np.array([0, 0, 0]), np.array([0.9, 0.1, 0.5])) is None
    assert auc_or_none(np.array([1, 1]), np.array([0.2, 0.3])) is None
    assert auc_or_none(np.zeros(0, np.int8), np.zeros(0)) is None
    # 2 of the 4 (anomalous, normal) pairs ranked right, one tied: (2 + 0.5) / 4
    assert auc_or_none(np.array([0, 1, 0, 1]), np.array([0.2, 0.6, 0.6, 0.1])) == 0.375
    assert auc_text(None) == auc_text(float("nan")) == "undefined (one class)"
    assert auc_text(0.375) == "0.3750"


def test_decisions_at_a_threshold_exact():
    # scores >= 0.5 are called anomalous: 0.5 (anomalous), 0.7 (normal), 0.9 (anomalous); the anomalous
    # 0.3 is missed
    labels = np.array([1, 0, 1, 0, 1, 0])
    scores = np.array([0.5, 0.7, 0.9, 0.1, 0.3, 0.49])
    assert at_threshold(labels, scores, 0.5) == ThresholdCounts(
        threshold=0.5, true_positives=2, false_positives=1, false_negatives=1, true_negatives=2,
        precision=2 / 3, recall=2 / 3, f1=2 / 3)
    # nothing called anomalous: precision undefined, recall 0; no anomalous video: recall undefined
    assert at_threshold(labels, scores, 0.95) == ThresholdCounts(0.95, 0, 0, 3, 3, None, 0.0, 0.0)
    assert at_threshold(np.zeros(2), np.array([0.1, 0.8]), 0.5) == ThresholdCounts(0.5, 0, 1, 0, 1, 0.0, None,
                                                                                      0.0)
