"""The VERA protocol: each step on hand-computed examples, and the composed AUC against scikit-learn."""

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from dualvad.eval.vera import (
    VeraSettings,
    VeraVideo,
    gaussian_smooth,
    position_weights,
    refine_by_similarity,
    repeat_to_frames,
    to_snippets,
    vera_frame_auc,
    vera_frame_scores,
)


def test_refinement_averages_the_most_similar_segments():
    scores = np.array([0.0, 1.0, 0.5])
    features = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 3.0]])  # 0 and 1 point the same way
    refined = refine_by_similarity(scores, features, neighbours=2, temperature=1.0)
    # segments 0 and 1: each other plus itself, equal similarity -> mean of 0 and 1
    # segment 2: itself (cos 1) and segment 0 (cos 0, the lower index wins the tie with 1)
    w_self = math.e / (math.e + 1.0)
    np.testing.assert_allclose(refined, [0.5, 0.5, 0.5 * w_self + 0.0 * (1 - w_self)], rtol=1e-12)


def test_refinement_with_one_neighbour_is_the_identity():
    rng = np.random.default_rng(0)
    scores = rng.random(7)
    np.testing.assert_allclose(refine_by_similarity(scores, rng.normal(size=(7, 5)), 1, 0.1), scores)


def test_snippets_take_the_segment_of_their_centre_frame():
    bounds = np.array([[0, 10], [10, 40]])
    # snippets of 16 frames: centres 8, 24 and 39 (the last one cut at the video's end)
    np.testing.assert_array_equal(to_snippets(np.array([0.2, 0.9]), bounds, 40, 16), [0.2, 0.9, 0.9])


def test_gaussian_smoothing_hand_computed():
    a = math.exp(-0.5)
    taps = np.array([a, 1.0, a]) / (1.0 + 2.0 * a)
    smoothed = gaussian_smooth(np.array([0.0, 0.0, 1.0, 0.0, 0.0]), kernel=3, sigma=1.0)
    np.testing.assert_allclose(smoothed, [0.0, taps[0], taps[1], taps[2], 0.0], rtol=1e-12)
    np.testing.assert_allclose(gaussian_smooth(np.full(4, 0.3), 15, 10.0), np.full(4, 0.3))  # edges padded


def test_repetition_per_snippet_is_cut_at_the_video_end():
    np.testing.assert_array_equal(repeat_to_frames(np.array([1.0, 2.0]), 3, 5), [1, 1, 1, 2, 2])


def test_position_weights_hand_computed():
    edge = math.exp(-((1.0 / 3.0) ** 2) / (2 * 0.5**2))
    np.testing.assert_allclose(position_weights(3, 0.5), [edge, 1.0, edge], rtol=1e-12)
    np.testing.assert_allclose(position_weights(5, math.inf), np.ones(5))


def test_composed_frame_scores_hand_computed():
    # one video of 6 frames, 2 segments of 3, snippets of 2 frames: every step by hand
    settings = VeraSettings(neighbours=1, temperature=1.0, kernel=3, sigma=1.0, snippet=2, position_sigma=0.5)
    bounds = np.array([[0, 3], [3, 6]])
    features = np.array([[1.0, 0.0], [0.0, 1.0]])
    # step 1 with one neighbour: unchanged [0, 1]; step 2: snippet centres 1, 3, 5 -> [0, 1, 1]
    a = math.exp(-0.5)
    taps = np.array([a, 1.0, a]) / (1 + 2 * a)
    smoothed = [taps[1] * 0 + taps[2] * 1 + taps[0] * 0, taps[0] * 0 + taps[1] * 1 + taps[2] * 1, 1.0]
    expected = np.repeat(smoothed, 2) * position_weights(6, 0.5)
    np.testing.assert_allclose(vera_frame_scores(np.array([0.0, 1.0]), bounds, features, 6, settings),
                               expected, rtol=1e-12)


def test_default_settings_follow_the_design():
    settings = VeraSettings()
    assert (settings.kernel, settings.sigma, settings.snippet) == (15, 10.0, 16)
    with pytest.raises(ValueError, match="config key 'kernel' must be odd, got 14"):
        VeraSettings(kernel=14)


def test_vera_auc_equals_scikit_learn_on_the_concatenated_curves():
    rng = np.random.default_rng(3)
    settings = VeraSettings()
    videos, truths, curves = [], [], []
    for index in range(6):
        frames = int(rng.integers(60, 200))
        edges = np.linspace(0, frames, 9).astype(int)
        bounds = np.stack([edges[:-1], edges[1:]], axis=1)
        intervals = [(frames // 3, frames // 2)] if index % 2 else []
        video = VeraVideo(rng.random(8), bounds, rng.normal(size=(8, 4)), frames, intervals)
        videos.append(video)
        curves.append(vera_frame_scores(video.segment_scores, bounds, video.features, frames, settings))
        truth = np.zeros(frames, dtype=int)
        for start, end in intervals:
            truth[start:end] = 1
        truths.append(truth)
    expected = roc_auc_score(np.concatenate(truths), np.concatenate(curves))
    assert vera_frame_auc(videos, settings) == pytest.approx(expected, abs=1e-12)


def test_vera_auc_needs_both_classes():
    video = VeraVideo(np.ones(2), np.array([[0, 5], [5, 10]]), np.eye(2), 10, [])
    with pytest.raises(ValueError, match="VERA frame-level AUC"):
        vera_frame_auc([video], VeraSettings())
