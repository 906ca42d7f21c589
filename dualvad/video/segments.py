"""Cutting a video into K equal segments, and placing frames inside a span (pure functions).

Frame ranges are half-open ``[start, end)`` in frame indices throughout dualvad.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def segment_bounds(num_frames: int, num_segments: int) -> np.ndarray:
    """Split ``num_frames`` frames into ``num_segments`` contiguous segments of equal span.

    Segment ``i`` covers ``[floor(i*N/K), floor((i+1)*N/K))``: spans differ by at most one
    frame and together cover every frame exactly once.

    Returns:
        int64 array (K, 2) of ``[start, end)`` frame indices.

    Raises:
        ValueError: fewer frames than segments (a segment would be empty).
    """
    if num_segments < 1:
        raise ValueError(f"num_segments must be >= 1, got {num_segments}")
    if num_frames < num_segments:
        raise ValueError(
            f"video has {num_frames} frames, fewer than the {num_segments} segments requested; "
            "every segment needs at least one frame"
        )
    edges = (np.arange(num_segments + 1, dtype=np.int64) * num_frames) // num_segments
    return np.stack([edges[:-1], edges[1:]], axis=1)


def subinterval_centres(start: int, end: int, count: int) -> np.ndarray:
    """Frame indices at the centres of ``count`` equal sub-intervals of ``[start, end)``.

    Index ``j`` is ``start + floor((j + 0.5) * (end - start) / count)``. The indices are
    strictly increasing (hence unique) whenever ``count <= end - start``.

    Returns:
        int64 array (count,).
    """
    span = end - start
    if span < 1:
        raise ValueError(f"empty frame range [{start}, {end})")
    if count < 0 or count > span:
        raise ValueError(
            f"cannot place {count} distinct frames in [{start}, {end}) which has {span} frames"
        )
    # (2j + 1) * span // (2 * count) is floor((j + 0.5) * span / count) in exact integers.
    j = np.arange(count, dtype=np.int64)
    return start + ((2 * j + 1) * span) // (2 * count)


def decode_depth(frames: np.ndarray, keyframes: np.ndarray) -> np.ndarray:
    """Frames since the last keyframe at or before each frame (int64, like ``frames``): what decoding
    it costs beyond its GOP's keyframe. A frame before the first keyframe counts from frame 0."""
    before = np.searchsorted(keyframes, frames, side="right") - 1
    return frames - np.where(before >= 0, keyframes[np.maximum(before, 0)], 0)


def pairs_per_segment(frames_per_segment: int) -> int:
    """Adjacent pairs the feature pass reads per segment (``ingest.frames_per_segment // 2``, at least one):
    also the anchors per decode window (:func:`window_anchors`)."""
    return max(frames_per_segment // 2, 1)


def decode_window_frames(seconds: float, fps: float) -> int:
    """``ingest.decode_window_s`` in frames of a ``fps`` video (rounded): the one conversion the feature
    pass and the sampler share."""
    return round(seconds * fps)


def decode_window(start: int, end: int, keyframes: np.ndarray, window: int) -> tuple[int, int]:
    """The ``[lo, hi)`` frames of segment ``[start, end)`` that are cheap to decode in a long-GOP video: the
    first ``window`` frames (at least one) from its first keyframe, or from its first frame when it holds
    none (decoding then goes on from the keyframe before it), cut at the segment's end. ``keyframes``:
    sorted int frame indices. The feature pass reads a long-GOP segment's pairs here
    (:func:`dualvad.scorer.features.window_pairs`), and the sampler can move its frames here
    (:func:`dualvad.video.sampling.within_decode_windows`)."""
    first = int(np.searchsorted(keyframes, start))
    origin = int(keyframes[first]) if first < len(keyframes) and keyframes[first] < end else start
    return origin, min(end, origin + max(window, 1))


def window_anchors(start: int, end: int, keyframes: np.ndarray, window: int, count: int) -> np.ndarray:
    """The ``count`` anchors the feature pass reads in segment ``[start, end)``'s decode window
    (:func:`decode_window`): the centres of ``count`` equal sub-intervals of the window, fewer when the
    window is shorter. A long-GOP segment's pairs start at these frames
    (:func:`dualvad.scorer.features.window_pairs`), and the sampler moves deep frames onto them first
    (:func:`dualvad.video.sampling.within_decode_windows`), so a reader can keep them from the features'
    walk (:meth:`dualvad.video.gop.GopReader.keep`) instead of decoding their GOP again.

    Returns:
        int64 array (min(count, window length),), strictly increasing.
    """
    origin, stop = decode_window(start, end, keyframes, window)
    return subinterval_centres(origin, stop, min(count, stop - origin))


def interval_fraction(
    bounds: np.ndarray, intervals: Sequence[tuple[int, int]] | None
) -> np.ndarray | None:
    """Share of each segment's frames that lie inside any annotated interval.

    Args:
        bounds: int array (K, 2) of ``[start, end)`` segment ranges.
        intervals: annotated ``[start, end)`` frame ranges; ``()`` means annotated with no
            anomaly, ``None`` means no temporal annotation.

    Returns:
        float32 array (K,) in [0, 1], or ``None`` when ``intervals`` is ``None``.
    """
    if intervals is None:
        return None
    total = int(bounds[-1, 1]) if len(bounds) else 0
    inside = np.zeros(total, dtype=bool)
    for start, end in intervals:
        inside[max(start, 0) : min(end, total)] = True
    counts = np.add.reduceat(inside.astype(np.int64), bounds[:, 0]) if total else np.zeros(0)
    spans = bounds[:, 1] - bounds[:, 0]
    return (counts / spans).astype(np.float32)
