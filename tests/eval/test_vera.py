"""The VERA protocol: each step computed by hand on small arrays, the whole protocol against figures from
the reference's own procedure, and the composed AUC against scikit-learn."""

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from dualvad.errors import SettingError
from dualvad.eval.vera import (
    VeraSettings,
    VeraVideo,
    gaussian_smooth,
    gaussian_taps,
    neighbour_count,
    position_weights,
    refine_by_similarity,
    repeat_to_frames,
    round_scores,
    snippet_segments,
    vera_frame_auc,
    vera_frame_scores,
)


def test_snippet_i_takes_the_segment_holding_frame_16_i():
    bounds = np.array([[0, 10], [10, 40]])
    # snippets start at frames 0, 16, 32; frame 0 is in segment 0, frames 16 and 32 in segment 1
    np.testing.assert_array_equal(snippet_segments(bounds, 40, 16), [0, 1, 1])
    np.testing.assert_array_equal(snippet_segments(bounds, 41, 16), [0, 1, 1])  # 41 frames: still 3
    # an annotated length past the decoded frames: snippets after the last segment take the last one
    np.testing.assert_array_equal(snippet_segments(bounds, 60, 16), [0, 1, 1, 1])


def test_neighbour_count_is_int_of_fifteen_percent_or_all():
    assert neighbour_count(19, 0.15) == 2  # int(2.85)
    assert neighbour_count(20, 0.15) == 3
    assert neighbour_count(6, 0.15) == 6  # int(0.9) = 0: the reference's [:, -0:] keeps every snippet


def test_refinement_hand_computed():
    scores = np.array([0.0, 1.0, 0.5])
    features = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 3.0]])  # 0 and 1 point the same way, 2 orthogonal
    e = math.exp(10.0)  # softmax of similarity x 10: similarity 1 weighs e^10, similarity 0 weighs 1
    # 3 snippets: int(0.45) = 0, so each snippet averages all three
    expected = [(0.0 * e + 1.0 * e + 0.5) / (2 * e + 1), (0.0 * e + 1.0 * e + 0.5) / (2 * e + 1),
                (0.0 + 1.0 + 0.5 * e) / (2 + e)]
    np.testing.assert_allclose(refine_by_similarity(scores, features, 0.15, 10.0), expected, rtol=1e-12)


def test_refinement_with_one_neighbour_keeps_the_higher_index_on_ties():
    scores = np.array([0.0, 1.0, 0.5])
    features = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 3.0]])
    # one neighbour each (int(0.34 x 3) = 1): snippets 0 and 1 tie at similarity 1, the later one is kept
    np.testing.assert_allclose(refine_by_similarity(scores, features, 0.34, 10.0), [1.0, 1.0, 0.5])
    # a zero feature vector: similarity 0 to everything (the reference would divide by zero)
    refined = refine_by_similarity(scores, np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]), 0.0, 10.0)
    assert np.isfinite(refined).all()


def test_gaussian_taps_are_the_references_non_centred_linspace():
    # 3 taps: linspace(-3 // 2, 3 // 2, 3) = linspace(-2, 1, 3) = [-2, -0.5, 1]
    raw = np.exp(-np.array([4.0, 0.25, 1.0]) / 2.0)
    np.testing.assert_allclose(gaussian_taps(3, 1.0), raw / raw.sum(), rtol=1e-12)
    # 15 taps, sigma 10: positions -8 .. 7 in steps of 15 / 14, the largest at -0.5 (index 7)
    taps = gaussian_taps(15, 10.0)
    positions = -8.0 + np.arange(15) * 15.0 / 14.0
    raw = np.exp(-positions**2 / 200.0)
    np.testing.assert_allclose(taps, raw / raw.sum(), rtol=1e-12)
    assert int(np.argmax(taps)) == 7 and taps[0] < taps[-1]


def test_gaussian_smoothing_hand_computed_with_zero_padding():
    taps = gaussian_taps(3, 1.0)
    # 5 snippets >= 3 taps: the usual 'same' window, a unit impulse spreads to its neighbours
    smoothed = gaussian_smooth(np.array([0.0, 0.0, 1.0, 0.0, 0.0]), 3, 1.0)
    np.testing.assert_allclose(smoothed, [0.0, taps[0], taps[1], taps[2], 0.0], rtol=1e-12)
    # zero padding: a constant curve falls off at both ends
    flat = gaussian_smooth(np.ones(5), 3, 1.0)
    np.testing.assert_allclose(flat, [taps[0] + taps[1], 1.0, 1.0, 1.0, taps[1] + taps[2]], rtol=1e-12)


def test_gaussian_smoothing_of_a_video_shorter_than_the_kernel_shifts_the_window():
    taps = gaussian_taps(3, 1.0)
    # 2 snippets < 3 taps: numpy's 'same' returns 3 values starting at full index (2 - 1) // 2 = 0, the
    # reference reads the first 2: snippet i = full[i], not full[i + 1] as for a long video
    np.testing.assert_allclose(gaussian_smooth(np.array([1.0, 0.0]), 3, 1.0), [taps[0], taps[1]], rtol=1e-12)
    # one snippet, 15 taps: its score times the first tap (x = -8)
    np.testing.assert_allclose(gaussian_smooth(np.array([0.7]), 15, 10.0), [0.7 * gaussian_taps(15, 10.0)[0]])
    # every length against the reference's expression, np.convolve(data, kernel, 'same') read to n
    for n in range(1, 25):
        values = np.linspace(0.0, 1.0, n) ** 2
        reference = np.convolve(values, gaussian_taps(15, 10.0), mode="same")[:n]
        np.testing.assert_array_equal(gaussian_smooth(values, 15, 10.0), reference)


def test_rounding_is_numpys_not_pythons():
    # round() of a NumPy float64 (the reference's values) is rint(x * 10) / 10: 0.35 * 10 == 3.5 -> 4
    np.testing.assert_array_equal(round_scores(np.array([0.35, 0.25, 0.05, 0.96]), 1), [0.4, 0.2, 0.0, 1.0])
    assert round(0.35, 1) == 0.3  # what Python's float round would have given
    assert [round(np.float64(x), 1) for x in (0.35, 0.25, 0.05)] == [0.4, 0.2, 0.0]


def test_repetition_per_snippet_runs_the_last_one_to_the_video_end():
    np.testing.assert_array_equal(repeat_to_frames(np.array([1.0, 2.0]), 3, 5), [1, 1, 1, 2, 2])
    assert len(repeat_to_frames(np.ones(3), 16, 40)) == 40


def test_position_weights_hand_computed():
    # L = 5: c = 2, (t - 2) / 2 = -1, -0.5, 0, 0.5, 1
    np.testing.assert_allclose(position_weights(5), np.exp(-0.5 * np.array([1, 0.25, 0, 0.25, 1.0])),
                               rtol=1e-12)
    # L = 4: c = floor(4 / 2) = 2, so the curve is not symmetric over the frames
    np.testing.assert_allclose(position_weights(4), np.exp(-0.5 * np.array([1, 0.25, 0, 0.25])), rtol=1e-12)
    np.testing.assert_array_equal(position_weights(1), [1.0])  # c = 0: the reference's 0/0, defined as 1


def test_composed_frame_scores_hand_computed():
    # 6 frames, 2 segments of 3, snippets of 2 frames (starts 0, 2, 4 -> segments 0, 0, 1), 3 taps, sigma 1
    settings = VeraSettings(snippet=2, neighbour_share=0.34, similarity_scale=10.0, kernel=3, sigma=1.0)
    bounds = np.array([[0, 3], [3, 6]])
    features = np.array([[1.0, 0.0], [0.0, 1.0]])
    # refinement: one neighbour each, the higher index of the tied snippets 0 and 1 -> [0.2, 0.2, 0.9]
    refined = np.array([0.2, 0.2, 0.9])
    taps = gaussian_taps(3, 1.0)
    smoothed = [refined[0] * taps[1] + refined[1] * taps[0],
                refined[0] * taps[2] + refined[1] * taps[1] + refined[2] * taps[0],
                refined[1] * taps[2] + refined[2] * taps[1]]
    expected = np.repeat(np.round(smoothed, 1), 2) * position_weights(6)
    np.testing.assert_allclose(vera_frame_scores(np.array([0.2, 0.9]), bounds, features, 6, settings),
                               expected, rtol=1e-12)


# Five videos (frames, segment bounds, segment scores, segment features, temporal label as in
# UCF_Eval.json): short ones (3 and 7 snippets, under the kernel's 15), long ones, two events, and an
# event whose end (400) lies past the video's 330 frames.
FIXED = [
    (250, [[0, 62], [62, 125], [125, 187], [187, 250]], [0.1, 0.7, 0.9, 0.2],
     [[1.0, 0.2, 0.0], [0.1, 1.0, 0.3], [0.0, 0.9, 0.5], [0.8, 0.1, 0.2]], [100, 180, -1, -1]),
    (100, [[0, 25], [25, 50], [50, 75], [75, 100]], [0.3, 0.2, 0.4, 0.1],
     [[0.5, 0.5, 0.1], [0.4, 0.6, 0.0], [0.2, 0.1, 0.9], [0.6, 0.3, 0.3]], [-1, -1, -1, -1]),
    (40, [[0, 10], [10, 20], [20, 30], [30, 40]], [0.2, 0.8, 0.6, 0.3],
     [[0.3, 0.0, 1.0], [0.9, 0.4, 0.1], [1.0, 0.5, 0.0], [0.2, 0.2, 0.8]], [10, 30, -1, -1]),
    (300, [[0, 75], [75, 150], [150, 225], [225, 300]], [0.5, 0.3, 0.2, 0.6],
     [[0.7, 0.7, 0.1], [0.1, 0.3, 0.9], [0.2, 0.2, 1.0], [0.9, 0.6, 0.0]], [-1, -1, -1, -1]),
    (330, [[0, 82], [82, 165], [165, 247], [247, 330]], [0.85, 0.15, 0.25, 0.75],
     [[0.9, 0.1, 0.4], [0.0, 1.0, 0.2], [0.1, 0.8, 0.3], [1.0, 0.0, 0.5]], [20, 60, 250, 400]),
]
# Obtained once (2026-12-02) by a literal transcription of vera-framework/VERA compute_auc.py (commit
# fd17c0f) in NumPy 2.4 / scikit-learn, its file reading replaced by in-memory inputs: each video's score
# dict built as generate_initial_score.py writes it (keys range(0, length, 16), 'end' = min(start + 150,
# length)), the snippet scores and features taken from the segment holding frame 16 i, then its loop and
# roc_curve + auc run unchanged. Per video: the rounded snippet scores, and the sum of its final frame
# curve (after position weighting).
REFERENCE_AUC = 0.6653806818181819
REFERENCE_SNIPPETS = [
    [0.2, 0.3, 0.3, 0.4, 0.4, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.4, 0.4, 0.3, 0.3],
    [0.1] * 7,
    [0.1] * 3,
    [0.2] + [0.3] * 16 + [0.2, 0.2],
    [0.4] * 7 + [0.5] + [0.4] * 11 + [0.3, 0.3],
]
REFERENCE_CURVE_SUMS = [90.1436096763271, 8.556041739339147, 3.4219920832244606, 74.12567718761152,
                        112.77649304998725]


def _fixed_videos() -> list[VeraVideo]:
    videos = []
    for frames, bounds, scores, features, label in FIXED:
        intervals = [(label[i], label[i + 1]) for i in range(0, len(label), 2) if label[i] != -1]
        videos.append(VeraVideo(np.array(scores), np.array(bounds), np.array(features), frames, intervals))
    return videos


def test_whole_protocol_matches_the_reference_procedure_on_fixed_inputs():
    settings = VeraSettings()
    for video, snippets, total in zip(_fixed_videos(), REFERENCE_SNIPPETS, REFERENCE_CURVE_SUMS, strict=True):
        curve = vera_frame_scores(video.segment_scores, video.bounds, video.features, video.num_frames,
                                  settings)
        assert len(curve) == video.num_frames
        np.testing.assert_allclose((curve / position_weights(video.num_frames))[::16], snippets, atol=1e-12)
        assert curve.sum() == pytest.approx(total, abs=1e-9)
    assert vera_frame_auc(_fixed_videos(), settings) == pytest.approx(REFERENCE_AUC, abs=1e-12)


def test_default_settings_are_the_references():
    settings = VeraSettings()
    assert (settings.snippet, settings.neighbour_share, settings.similarity_scale, settings.kernel,
            settings.sigma, settings.decimals) == (16, 0.15, 10.0, 15, 10.0, 1)
    with pytest.raises(SettingError, match="config key 'neighbour_share' must be <= 1, got 1.5"):
        VeraSettings(neighbour_share=1.5)


def test_vera_auc_equals_scikit_learn_on_the_concatenated_curves():
    rng = np.random.default_rng(3)
    settings = VeraSettings()
    videos, truths, curves = [], [], []
    for index in range(6):
        frames = int(rng.integers(60, 400))
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
