"""Segment bounds, frame placement and annotation overlap: exact values."""

import numpy as np
import pytest

from dualvad.video.segments import interval_fraction, segment_bounds, subinterval_centres


def test_bounds_exact_when_divisible():
    np.testing.assert_array_equal(segment_bounds(8, 4), [[0, 2], [2, 4], [4, 6], [6, 8]])


def test_bounds_exact_when_not_divisible():
    # floor(i * 10 / 4) = 0, 2, 5, 7, 10
    np.testing.assert_array_equal(segment_bounds(10, 4), [[0, 2], [2, 5], [5, 7], [7, 10]])


@pytest.mark.parametrize("frames,k", [(32, 32), (33, 32), (250, 32), (18000, 32), (61, 7)])
def test_bounds_partition_every_frame(frames, k):
    bounds = segment_bounds(frames, k)
    assert bounds.shape == (k, 2) and bounds.dtype == np.int64
    assert bounds[0, 0] == 0 and bounds[-1, 1] == frames
    np.testing.assert_array_equal(bounds[1:, 0], bounds[:-1, 1])
    spans = bounds[:, 1] - bounds[:, 0]
    assert spans.min() >= 1 and spans.max() - spans.min() <= 1


def test_too_few_frames_names_the_numbers():
    """The numbers only: the fix depends on the caller (ingest: fewer segments; detect: a longer video)."""
    with pytest.raises(ValueError, match=r"1 frames, fewer than the 32 segments requested; every segment "
                                         r"needs at least one frame$"):
        segment_bounds(1, 32)


def test_subinterval_centres_exact():
    np.testing.assert_array_equal(subinterval_centres(0, 10, 2), [2, 7])
    np.testing.assert_array_equal(subinterval_centres(100, 104, 4), [100, 101, 102, 103])
    np.testing.assert_array_equal(subinterval_centres(5, 6, 1), [5])
    np.testing.assert_array_equal(subinterval_centres(0, 9, 3), [1, 4, 7])


def test_subinterval_centres_refuses_more_than_span():
    with pytest.raises(ValueError, match="cannot place 5 distinct frames in \\[0, 4\\)"):
        subinterval_centres(0, 4, 5)


def test_interval_fraction_exact():
    bounds = segment_bounds(10, 5)  # [0,2) [2,4) [4,6) [6,8) [8,10)
    np.testing.assert_allclose(interval_fraction(bounds, [(3, 7)]), [0, 0.5, 1, 0.5, 0])
    np.testing.assert_allclose(interval_fraction(bounds, [(0, 1), (9, 20)]), [0.5, 0, 0, 0, 0.5])
    np.testing.assert_array_equal(interval_fraction(bounds, ()), np.zeros(5))
    assert interval_fraction(bounds, None) is None
