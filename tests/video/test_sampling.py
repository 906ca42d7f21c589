"""Frame sampling: hand-worked allocations and properties over generated cases (hypothesis)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dualvad.video.sampling import Allocation, cdf, focused, random, uniform, within_decode_windows
from dualvad.video.segments import segment_bounds

FOUR_BY_TEN = segment_bounds(40, 4)


def test_focused_hand_worked_softmax_case():
    allocation = focused(np.array([0.0, 0.0, 1.0, 0.0]), FOUR_BY_TEN, budget=8, tau=0.1)
    np.testing.assert_array_equal(allocation.per_segment, [1, 1, 5, 1])
    np.testing.assert_array_equal(allocation.frames, [5, 15, 21, 23, 25, 27, 29, 35])


def test_focused_hand_worked_grouped_case():
    scores = np.array([0.1, 0.9, 0.3, 0.2, 0.8, 0.1])
    allocation = focused(scores, segment_bounds(30, 6), budget=3)
    np.testing.assert_array_equal(allocation.per_segment, [0, 1, 1, 0, 1, 0])
    np.testing.assert_array_equal(allocation.frames, [7, 12, 22])


def test_focused_overflow_goes_to_next_highest_weight():
    allocation = focused(np.array([1.0, 0.0]), np.array([[0, 3], [3, 13]]), budget=8, tau=0.01)
    np.testing.assert_array_equal(allocation.per_segment, [3, 5])
    np.testing.assert_array_equal(allocation.frames, [0, 1, 2, 4, 6, 8, 10, 12])


def test_baselines_hand_worked():
    np.testing.assert_array_equal(uniform(FOUR_BY_TEN, 4).frames, [5, 15, 25, 35])
    np.testing.assert_array_equal(cdf(np.array([0.0, 1.0]), segment_bounds(8, 2), 2, offset=0.0).frames,
                                  [4, 6])
    first, second = random(FOUR_BY_TEN, 6, seed=4), random(FOUR_BY_TEN, 6, seed=4)
    np.testing.assert_array_equal(first.frames, second.frames)
    assert not np.array_equal(first.frames, random(FOUR_BY_TEN, 6, seed=5).frames)


def test_errors_state_numbers_and_fix():
    with pytest.raises(ValueError, match=r"frame budget 41 is outside 1..40.*lower --budget to at most 40"):
        focused(np.zeros(4), FOUR_BY_TEN, budget=41)
    with pytest.raises(ValueError, match="tau must be > 0"):
        focused(np.zeros(4), FOUR_BY_TEN, budget=4, tau=0)
    with pytest.raises(ValueError, match="3 scores and bounds of shape"):
        focused(np.zeros(3), FOUR_BY_TEN, budget=4)


@st.composite
def videos(draw):
    k = draw(st.integers(1, 24))
    spans = np.array(draw(st.lists(st.integers(1, 20), min_size=k, max_size=k)))
    edges = np.concatenate([[0], np.cumsum(spans)])
    bounds = np.stack([edges[:-1], edges[1:]], axis=1)
    scores = np.array(draw(st.lists(st.floats(0, 1), min_size=k, max_size=k)))
    budget = draw(st.integers(1, int(spans.sum())))
    return scores, bounds, budget


def _valid(allocation, bounds, budget):
    frames = allocation.frames
    assert len(frames) == budget
    assert (np.diff(frames) > 0).all()  # sorted and unique
    assert frames.min() >= 0 and frames.max() < bounds[-1, 1]
    counts = [((frames >= s) & (frames < e)).sum() for s, e in bounds]
    np.testing.assert_array_equal(allocation.per_segment, counts)


@settings(max_examples=300, deadline=None)
@given(videos(), st.sampled_from([0.01, 0.1, 1.0, 10.0]), st.integers(0, 2))
def test_focused_properties(video, tau, floor):
    scores, bounds, budget = video
    allocation = focused(scores, bounds, budget, tau=tau, floor=floor)
    _valid(allocation, bounds, budget)
    np.testing.assert_array_equal(focused(scores, bounds, budget, tau, floor).frames, allocation.frames)
    counts, spans = allocation.per_segment, bounds[:, 1] - bounds[:, 0]
    if budget >= floor * len(scores) or budget >= len(scores):
        floor = min(floor, budget // len(scores))
        assert (counts >= np.minimum(floor, spans)).all()  # every segment covered
        for i in range(len(scores)):  # a higher score never gets fewer frames, unless it is full
            for j in range(len(scores)):
                if scores[i] > scores[j] and counts[i] < counts[j]:
                    assert counts[i] == spans[i]


@settings(max_examples=200, deadline=None)
@given(videos(), st.integers(0, 10_000))
def test_baseline_properties(video, seed):
    scores, bounds, budget = video
    _valid(uniform(bounds, budget), bounds, budget)
    _valid(random(bounds, budget, seed), bounds, budget)
    _valid(cdf(scores, bounds, budget), bounds, budget)


def test_large_tau_gives_uniform_allocation():
    scores = np.random.default_rng(1).random(32)
    allocation = focused(scores, segment_bounds(3200, 32), budget=32 + 70, tau=1e9)
    assert allocation.per_segment.max() - allocation.per_segment.min() <= 1
    assert allocation.per_segment.sum() == 102


def test_focus_follows_the_scores_as_tau_shrinks():
    scores = np.linspace(0, 1, 32)
    bounds = segment_bounds(3200, 32)
    top_share = [focused(scores, bounds, 96, tau=t).per_segment[-4:].sum() for t in (10.0, 0.3, 0.05)]
    assert top_share[0] < top_share[1] < top_share[2]


# ------------------------------------------------------------------ frames moved into the decode windows

LONG_BOUNDS = np.array([[0, 225], [225, 450], [450, 675]])  # 3 segments of 7.5 s at 30 fps
LONG_KEYS = np.array([0, 250, 500])  # x264's default keyint


def _placed(frames: list[int], keyframes, window: int = 30, bounds=LONG_BOUNDS,
            anchors: int = 4) -> list[int]:
    counts = np.bincount(np.searchsorted(bounds[:, 1], frames, side="right"), minlength=len(bounds))
    allocation = Allocation(np.array(frames, dtype=np.int64), counts)
    placed = within_decode_windows(allocation, bounds, keyframes, window, anchors)
    assert placed.per_segment.tolist() == counts.tolist()  # every frame stays in its segment
    return placed.frames.tolist()


def test_deep_frames_move_onto_their_segments_window_anchors():
    # segment 0's window [0, 30), anchors 3, 11, 18, 26 (centres of 4 sub-intervals): 112 (112 deep) -> 18,
    # the centre of the 4 anchors; segment 1's window [250, 280) opens at its keyframe (anchors 253, 261,
    # 268, 276): 260 (10 deep) stays, 240 (240 deep, before the keyframe), 337 and 340 take anchors 0, 2, 3
    # of the 4 (centres of 3 sub-intervals of the list); segment 2's window [500, 530): 562 -> 518
    assert _placed([112, 240, 260, 337, 340, 562], LONG_KEYS) == [18, 253, 260, 268, 276, 518]
    # a segment without a keyframe: its window is its first 30 frames (decoded on from the keyframe before)
    assert _placed([150], np.array([0, 250]), bounds=np.array([[0, 100], [100, 200], [200, 300]])) == [118]


def test_the_anchors_are_the_frames_the_feature_pass_reads_in_the_window():
    from dualvad.scorer.features import window_pairs

    moved = _placed([40, 80, 120, 160], LONG_KEYS)  # 4 deep frames of segment 0: every anchor
    assert moved == window_pairs(0, 225, 4, 675, LONG_KEYS, 30)[0::2].tolist() == [3, 11, 18, 26]


def test_without_anchors_deep_frames_spread_over_the_windows_free_frames():
    # anchors=0: the centres of equal sub-intervals of the window's free frames (segment 1: 29 free frames,
    # 260 holds one)
    assert _placed([112, 240, 260, 337, 340, 562], LONG_KEYS, anchors=0) == [15, 254, 260, 265, 275, 515]


def test_more_moved_frames_than_free_anchors_take_the_anchors_then_the_windows_other_frames():
    # 6 deep frames of segment 0: anchors 3, 11, 18, 26, then 2 of the window's 26 other free frames
    # (centres of 2 sub-intervals: positions 6 and 19 of [0..29] less the anchors, frames 7 and 22)
    assert _placed([40, 60, 90, 120, 150, 180], LONG_KEYS) == [3, 7, 11, 18, 22, 26]


def test_a_full_window_gives_every_free_frame_then_the_nearest_after_it():
    # window 4: [250, 254); 250-252 are in it and stay, so the 4 deep frames take 253, then 254-256
    assert _placed([250, 251, 252, 300, 301, 302, 303], LONG_KEYS, window=4) == [250, 251, 252, 253, 254,
                                                                                 255, 256]
    # a window at the segment's end (keyframe 220 of [0, 225), window [220, 224)): 221-223 in it and 224
    # (4 deep) stay; 10 and 100 take its free 220, then (nothing free after it) 219, the nearest before it
    assert _placed([10, 100, 221, 222, 223, 224], np.array([220]), window=4,
                   bounds=np.array([[0, 225]])) == [219, 220, 221, 222, 223, 224]


def test_nothing_moves_with_a_keyframe_every_window_or_no_window():
    frames = [14, 29, 112, 224, 300, 449, 674]
    assert _placed(frames, np.arange(0, 675, 30)) == frames  # a keyframe a second: at most 29 frames deep
    assert _placed(frames, LONG_KEYS, window=0) == frames  # ingest.decode_window_s = 0
    assert _placed(frames, None) == frames  # keyframes not read
