"""Frame sampling strategies (pure functions): DUAL-VAD's anomaly-focused softmax allocation
and the baselines beside it (uniform, seeded random, Holmes-VAU inverse-CDF).

Every strategy returns an :class:`Allocation`: sorted, unique frame indices plus how many of
them fall in each of the video's K segments. Segments are ``[start, end)`` frame ranges
(``bounds``, int (K, 2)) covering the video, as :func:`dualvad.video.segments.segment_bounds`
cuts them. :func:`within_decode_windows` then moves, in a long-GOP video, the frames that are expensive
to decode into their segment's decode window (``sample.within_decode_window``).
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
from pydantic import Field

from dualvad.validation import config_section
from dualvad.video.config import IngestConfig
from dualvad.video.segments import (
    decode_depth,
    decode_window,
    decode_window_frames,
    pairs_per_segment,
    subinterval_centres,
    window_anchors,
)

Strategy = Literal["focused", "uniform", "random", "cdf"]
STRATEGIES: tuple[str, ...] = typing.get_args(Strategy)


@config_section
class SampleConfig:
    """The ``sample.*`` settings: how many frames to take from each video, and where (:func:`allocate`).

    strategy: one of STRATEGIES. budget: N frames per video (>= 1). tau: softmax temperature of
    ``focused`` (> 0). floor: m, coverage frames per segment of ``focused`` (>= 0). cdf_offset: density
    offset of ``cdf`` (>= 0). seed: the ``random`` strategy's seed. within_decode_window: after any
    strategy, move each picked frame that lies more than ``ingest.decode_window_s`` into its GOP into its
    segment's decode window, onto the frames the feature pass read there first
    (:func:`within_decode_windows`):
    nothing moves in videos with a keyframe at least every ``decode_window_s``; in a long-GOP video
    (x264's default, a keyframe every 250 frames) a sampled frame then costs at most a window's decoding,
    not half a GOP's, and the VLM sees the part of each segment the scorer scored, not its whole span.
    Files only: a live stream decodes every frame anyway. window_anchors: the moved frames go onto the
    window's anchors first (the frames the feature pass decodes there, which the detector keeps from its
    walk); false: spread over the window's free frames, each decoded again from its keyframe.
    """

    strategy: Strategy = "focused"
    budget: Annotated[int, Field(ge=1)] = 16
    tau: Annotated[float, Field(gt=0)] = 0.1
    floor: Annotated[int, Field(ge=0)] = 1
    cdf_offset: Annotated[float, Field(ge=0)] = 0.1
    seed: int = 0
    within_decode_window: bool = True
    window_anchors: bool = True


#: What a run sampled before a sample setting existed: its record lacks the key (records keep the settings
#: of their day). Before within_decode_window, frames stayed where the strategy put them; before
#: window_anchors, the moved ones spread over the window's free frames.
SAMPLE_SETTINGS_BEFORE: dict[str, object] = {"within_decode_window": False, "window_anchors": False}


@dataclass(frozen=True)
class DecodeWindow:
    """How ingest read a run's long-GOP segments, which :func:`within_decode_windows` places frames by:
    ``ingest.decode_window_s`` (s; 0: never) and the anchors per window (the feature pass's pairs per
    segment, :func:`dualvad.video.segments.pairs_per_segment`)."""

    seconds: float = 0.0
    anchors: int = 0

    @staticmethod
    def of(ingest: IngestConfig) -> DecodeWindow:
        """The decode window of the ``ingest.*`` settings."""
        return DecodeWindow(ingest.decode_window_s, pairs_per_segment(ingest.frames_per_segment))


#: A run ingested without a decode window (nothing moves).
NO_DECODE_WINDOW = DecodeWindow()


@dataclass(frozen=True)
class Allocation:
    """The frames a strategy picked in one video."""

    frames: np.ndarray  # int64 (N,), sorted, unique frame indices
    per_segment: np.ndarray  # int64 (K,), how many of ``frames`` fall in each segment


def focused(
    scores: np.ndarray, bounds: np.ndarray, budget: int, tau: float = 0.1, floor: int = 1
) -> Allocation:
    """Anomaly-focused softmax allocation of ``budget`` frames (DESIGN.md, step for step).

    1. ``budget >= floor*K``: every segment first gets ``floor`` frames (full coverage); the
       remaining ``R`` frames are split by ``softmax(scores / tau)`` with largest-remainder
       rounding, no segment getting more frames than it has (overflow goes, frame by frame,
       to the highest-weighted segments with room left).
    2. ``budget < floor*K``: the K segments form ``budget`` contiguous groups; each group gives
       one frame, from its highest-scoring segment (the first one on ties). (When ``floor > 1``
       and ``K <= budget < floor*K``, step 1 runs with the floor lowered to ``budget // K``.)
    3. A segment's ``n`` frames sit at the centres of ``n`` equal sub-intervals of it.

    Args:
        scores: float (K,) segment anomaly scores (any real values; [0, 1] from the scorer).
        bounds: int (K, 2) ``[start, end)`` frames of each segment.
        budget: N, the number of frames to select.
        tau: softmax temperature (> 0); large values tend to uniform allocation.
        floor: m, frames every segment gets before the softmax share (>= 0).

    Raises:
        ValueError: budget outside ``1 .. num_frames``, non-positive tau, negative floor, or
            scores/bounds of different lengths; the message states the numbers and the fix.
    """
    scores, spans = _check(scores, bounds, budget)
    if tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau}; use a small value (e.g. 0.1) to focus, a large one "
                         "for uniform allocation")
    if floor < 0:
        raise ValueError(f"floor (frames per segment) must be >= 0, got {floor}")
    k = len(scores)
    if budget >= k or (budget >= floor * k):
        # With floor m > 1 and K <= N < m*K the floor is lowered to what the budget affords,
        # N // K frames per segment (DESIGN.md's grouping only makes sense for N < K).
        counts = _floor_then_softmax(scores, spans, budget, tau, min(floor, budget // k))
    else:
        counts = _grouped_argmax(scores, budget)
    return Allocation(_place(bounds, counts), counts)


def uniform(bounds: np.ndarray, budget: int) -> Allocation:
    """``budget`` frames at the centres of equal sub-intervals of the whole video."""
    _check(np.zeros(len(bounds)), bounds, budget)
    frames = _centres(np.array([bounds[0, 0]]), np.array([bounds[-1, 1]]), np.array([budget]))
    return Allocation(frames, _count_per_segment(frames, bounds))


def random(bounds: np.ndarray, budget: int, seed: int) -> Allocation:
    """``budget`` distinct frames drawn uniformly at random (seeded: same seed, same frames)."""
    _check(np.zeros(len(bounds)), bounds, budget)
    start, end = int(bounds[0, 0]), int(bounds[-1, 1])
    frames = np.sort(np.random.default_rng(seed).choice(np.arange(start, end), budget, replace=False))
    return Allocation(frames.astype(np.int64), _count_per_segment(frames, bounds))


def cdf(scores: np.ndarray, bounds: np.ndarray, budget: int, offset: float = 0.1) -> Allocation:
    """Holmes-VAU's temporal sampler: inverse-CDF sampling of the density ``score + offset``.

    Each frame's density is its segment's score plus ``offset``; frame ``j`` of ``budget`` is
    where the cumulative density first reaches ``(j + 0.5) / budget``. Collisions are pushed
    to the next free frame (and back from the end), so exactly ``budget`` distinct frames.
    """
    scores, spans = _check(scores, bounds, budget)
    if offset < 0 or (offset == 0 and scores.max() <= 0):
        raise ValueError(f"offset must be >= 0 and leave some positive density, got {offset}")
    density = np.repeat(np.maximum(scores, 0.0) + offset, spans)
    cumulative = np.cumsum(density) / density.sum()
    targets = (np.arange(budget) + 0.5) / budget
    frames = np.searchsorted(cumulative, targets).astype(np.int64)
    frames = _make_distinct(np.minimum(frames, len(density) - 1), len(density)) + int(bounds[0, 0])
    return Allocation(frames, _count_per_segment(frames, bounds))


def allocate(
    strategy: str, scores: np.ndarray, bounds: np.ndarray, budget: int, *, tau: float = 0.1,
    floor: int = 1, offset: float = 0.1, seed: int = 0,
) -> Allocation:
    """Run the strategy named ``strategy`` (one of STRATEGIES) with its own parameters."""
    if strategy == "focused":
        return focused(scores, bounds, budget, tau=tau, floor=floor)
    if strategy == "uniform":
        return uniform(bounds, budget)
    if strategy == "random":
        return random(bounds, budget, seed)
    if strategy == "cdf":
        return cdf(scores, bounds, budget, offset=offset)
    raise ValueError(f"unknown sampling strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")


def place_in_decode_windows(allocation: Allocation, bounds: np.ndarray, keyframes: np.ndarray | None,
                            fps: float, window: DecodeWindow, settings: SampleConfig) -> Allocation:
    """``allocation`` (a strategy's frames in the segments ``bounds``, int (K, 2)) placed as ``settings``
    say (``within_decode_window``, ``window_anchors``) in the decode windows a run was ingested with, by a
    ``fps`` video's ``keyframes`` (int (G,), sorted; None: nothing moves): the one placement the sample
    stage and the detector share (:func:`within_decode_windows`)."""
    if not settings.within_decode_window:
        return allocation
    return within_decode_windows(allocation, bounds, keyframes, decode_window_frames(window.seconds, fps),
                                 window.anchors if settings.window_anchors else 0)


def within_decode_windows(allocation: Allocation, bounds: np.ndarray, keyframes: np.ndarray | None,
                          window: int, anchors: int) -> Allocation:
    """``allocation`` with each frame that lies more than ``window`` frames into its GOP (its decode depth,
    :func:`dualvad.video.segments.decode_depth`) moved into its segment's decode window (``[lo, hi)``,
    :func:`dualvad.video.segments.decode_window`), where the feature pass reads a long-GOP segment.

    Per segment: frames inside the window or at most ``window`` deep stay; the ``m`` others go first onto
    the window's free anchors (:func:`dualvad.video.segments.window_anchors`, the frames the feature pass
    decodes there; those no staying frame holds), the centres of ``m`` equal sub-intervals of that list, so
    they stay distinct and spread over the window and a reader can keep them from the features' walk. More
    moved frames than free anchors take, beyond the anchors, the centres of equal sub-intervals of the
    window's other free frames; a window with too few free frames gives them all, then the segment's free
    frames after it, then those before it, nearest first. Every frame stays in its segment, so
    ``per_segment`` is unchanged.

    Args:
        allocation: a strategy's frames (sorted, unique) in the segments ``bounds`` (int (K, 2)).
        keyframes: int (G,) sorted keyframe indices; None or empty: nothing moves.
        window: frames (``round(ingest.decode_window_s * fps)``); <= 0: nothing moves.
        anchors: anchors per window: the feature pass's pairs per segment (``DecodeWindow.anchors``); 0: the
            moved frames spread over the window's free frames alone.

    Returns:
        An Allocation: sorted, unique int64 frames; the same ``per_segment``.
    """
    frames = np.asarray(allocation.frames, dtype=np.int64)
    if keyframes is None or not len(keyframes) or window <= 0 or not len(frames):
        return allocation
    keyframes = np.asarray(keyframes, dtype=np.int64)
    bounds = np.asarray(bounds, dtype=np.int64)
    segment = np.searchsorted(bounds[:, 1], frames, side="right")
    deep = decode_depth(frames, keyframes) > window
    placed = []
    for k in np.unique(segment):
        start, end = (int(b) for b in bounds[k])
        lo, hi = decode_window(start, end, keyframes, window)
        mine, move = frames[segment == k], deep[segment == k]
        move &= (mine < lo) | (mine >= hi)
        placed.append(mine[~move])
        if move.any():
            taken, count = set(mine[~move].tolist()), int(move.sum())
            free = np.array([a for a in window_anchors(start, end, keyframes, window, anchors).tolist()
                             if a not in taken], dtype=np.int64)
            if count <= len(free):
                placed.append(free[subinterval_centres(0, len(free), count)])
            else:
                rest = _window_slots(start, end, lo, hi, taken | set(free.tolist()), count - len(free))
                placed += [free, rest]
    return Allocation(np.sort(np.concatenate(placed)), allocation.per_segment)


def _window_slots(start: int, end: int, lo: int, hi: int, taken: set[int], count: int) -> np.ndarray:
    """``count`` frames of ``[start, end)`` outside ``taken``: spread over ``[lo, hi)``'s free frames, or
    (too few there) all of those, then the nearest free frames after ``hi``, then before ``lo``."""
    free = np.array([f for f in range(lo, hi) if f not in taken], dtype=np.int64)
    if len(free) >= count:
        return free[subinterval_centres(0, len(free), count)]
    rest = [f for f in (*range(hi, end), *range(lo - 1, start - 1, -1)) if f not in taken]
    return np.concatenate([free, np.array(rest[: count - len(free)], dtype=np.int64)])


def _check(scores: np.ndarray, bounds: np.ndarray, budget: int) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64)
    bounds = np.asarray(bounds)
    if bounds.ndim != 2 or bounds.shape[1] != 2 or len(bounds) != len(scores) or len(scores) == 0:
        raise ValueError(f"need one [start, end) row per score: got {len(scores)} scores and bounds of "
                         f"shape {bounds.shape}")
    spans = (bounds[:, 1] - bounds[:, 0]).astype(np.int64)
    frames = int(spans.sum())
    if not 1 <= budget <= frames:
        raise ValueError(f"frame budget {budget} is outside 1..{frames}, the video's frame count; "
                         f"lower --budget to at most {frames} (or leave out videos this short)")
    return scores, spans


def _softmax(scores: np.ndarray, tau: float) -> np.ndarray:
    z = scores / tau
    z = np.exp(z - z.max())
    return z / z.sum()


def _floor_then_softmax(scores: np.ndarray, spans: np.ndarray, budget: int, tau: float,
                        floor: int) -> np.ndarray:
    """Steps 1 of the allocation: coverage floor, then the softmax share with capacities."""
    base = np.minimum(floor, spans)  # a segment shorter than the floor gives what it has
    weights = _softmax(scores, tau)
    room = spans - base
    extra = _largest_remainder(weights, budget - int(base.sum()), tie_break=scores)
    overflow = int(np.maximum(extra - room, 0).sum())
    extra = np.minimum(extra, room)
    # Overflow goes, frame by frame, to the highest-weighted segments that still have room.
    # (ordered by score, not weight: softmax can round different scores to equal weights)
    for segment in np.lexsort((np.arange(len(scores)), -scores)):
        if overflow == 0:
            break
        give = min(overflow, int(room[segment] - extra[segment]))
        extra[segment] += give
        overflow -= give
    return base + extra


def _largest_remainder(weights: np.ndarray, total: int, tie_break: np.ndarray) -> np.ndarray:
    """Integers summing to ``total``, proportional to ``weights`` (Hamilton's method).

    Leftover units go to the largest fractional parts; ties to the larger ``tie_break`` (the
    scores the weights came from), then to the earlier segment, so the result is
    deterministic and monotone in the scores.
    """
    quotas = weights * total
    counts = np.floor(quotas).astype(np.int64)
    leftover = total - int(counts.sum())
    if leftover > 0:
        fractions = quotas - counts
        order = np.lexsort((np.arange(len(weights)), -tie_break, -fractions))
        counts[order[:leftover]] += 1
    return counts


def _grouped_argmax(scores: np.ndarray, budget: int) -> np.ndarray:
    """Step 2: ``budget`` contiguous groups of segments, one frame from each group's best segment."""
    k = len(scores)
    edges = (np.arange(budget + 1) * k) // budget
    counts = np.zeros(k, dtype=np.int64)
    for start, end in zip(edges[:-1], edges[1:], strict=True):
        counts[start + int(np.argmax(scores[start:end]))] = 1
    return counts


def _centres(starts: np.ndarray, ends: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Centres of ``counts[i]`` equal sub-intervals of each ``[starts[i], ends[i])``, concatenated.

    Frame ``j`` of a range is ``start + floor((j + 0.5) * span / n)`` (as
    :func:`dualvad.video.segments.subinterval_centres`), vectorised over ranges.
    """
    owner = np.repeat(np.arange(len(counts)), counts)
    j = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    spans, n = (ends - starts)[owner], counts[owner]
    return (starts[owner] + ((2 * j + 1) * spans) // (2 * n)).astype(np.int64)


def _place(bounds: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Step 3: each segment's frames at its sub-interval centres (sorted: segments are in order)."""
    return _centres(bounds[:, 0].astype(np.int64), bounds[:, 1].astype(np.int64), counts)


def _count_per_segment(frames: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    segment = np.searchsorted(bounds[:, 1], frames, side="right")
    return np.bincount(segment, minlength=len(bounds)).astype(np.int64)


def _make_distinct(frames: np.ndarray, total: int) -> np.ndarray:
    """Sorted ``frames`` (N,) in ``0 .. total-1`` made strictly increasing with minimal moves."""
    n = len(frames)
    forward = np.maximum.accumulate(frames - np.arange(n)) + np.arange(n)  # push collisions right
    limit = total - n + np.arange(n)  # ... but never past the end
    return np.minimum(forward, limit)
