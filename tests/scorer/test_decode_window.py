"""Which frames the feature pass decodes: spread pairs in short GOPs, pairs after keyframes in long ones."""

import numpy as np

from dualvad.scorer.features import decode_depth, pair_indices, segment_frames, window_pairs

LONG = np.array([0, 250, 500], dtype=np.int64)  # x264's default keyint at 30 fps


def test_window_pairs_start_at_the_segments_keyframe_or_its_first_frame():
    assert window_pairs(225, 450, 4, 7200, LONG, 30).tolist() == [253, 254, 261, 262, 268, 269, 276, 277]
    # no keyframe inside [2025, 2250): the window opens at the segment's first frame
    keys = np.array([2000, 2250], dtype=np.int64)
    assert window_pairs(2025, 2250, 4, 7200, keys, 30).tolist() == [2028, 2029, 2036, 2037, 2043, 2044,
                                                                    2051, 2052]
    # a window shorter than the pairs: one pair per frame; the last frame's successor is itself
    assert window_pairs(0, 3, 4, 3, LONG, 30).tolist() == [0, 1, 1, 2, 2, 2]


def test_decode_depth_counts_from_the_keyframe_before():
    assert decode_depth(np.array([0, 5, 250, 260, 100]), LONG).tolist() == [0, 5, 0, 10, 100]
    assert decode_depth(np.array([5, 12]), np.array([10])).tolist() == [5, 2]  # before the first: from 0


def test_short_gops_keep_the_spread_pairs():
    keys = np.arange(0, 600, 15)  # a keyframe every second at 15 fps: no anchor is 15 frames deep
    bounds = np.array([[0, 60], [60, 125], [125, 600]])
    got = segment_frames(bounds, 4, 600, keys, 15)
    assert [g.tolist() for g in got] == [pair_indices(s, e, 4, 600, keys).tolist() for s, e in bounds]
    assert segment_frames(bounds, 4, 600, None, 15)[2].tolist() == pair_indices(125, 600, 4, 600).tolist()


def test_long_gops_take_the_pairs_in_the_window():
    bounds = np.array([[0, 225], [225, 450]])
    spread, window = segment_frames(bounds, 4, 7200, LONG, 0), segment_frames(bounds, 4, 7200, LONG, 30)
    assert spread[0].tolist() == pair_indices(0, 225, 4, 7200, LONG).tolist()  # window 0: never
    assert spread[0][0::2].tolist() == [0, 84, 140, 196]  # 196 frames into the GOP
    assert window[0].tolist() == [3, 4, 11, 12, 18, 19, 26, 27]
    assert window[1].tolist() == [253, 254, 261, 262, 268, 269, 276, 277]
