"""Per-segment feature extraction: decode a few frames of each segment, reduce, drop.

Two extractors share one interface (:class:`SegmentFeatureExtractor`):

* ``motion`` (default) needs no weights: cues from downsampled frames and differences of
  adjacent frames, each taken relative to the rest of its video. It carries the cues
  surveillance anomalies leave: fast or scattering motion, sudden brightness (flashes, fire),
  actors that stop, and camera faults or edits (a frozen picture, a covered or defocused lens, a
  cut), with no cue tied to a colour or a place.
* ``clip`` embeds frames with a transformers CLIP vision encoder (a hub id on a cluster, a
  local directory holding a tiny random model in tests) and mean-pools them per segment.

Memory does not grow with video length: :func:`extract_video_features` decodes a fixed number
of frames per segment, at a small decode size, and keeps nothing else of the video.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from dualvad.scorer.cues import (
    FROZEN_CUES,
    LENS_CUES,
    SCENE_CUES,
    frozen_cues,
    lens_cues,
    scene_cues,
    segment_median,
)
from dualvad.video.config import IngestConfig
from dualvad.video.decode import MAX_PIXELS
from dualvad.video.gop import GopReader
from dualvad.video.segments import (
    decode_depth,
    decode_window_frames,
    pairs_per_segment,
    segment_bounds,
    subinterval_centres,
    window_anchors,
)

GRID = 8  # moving pixels are pooled on a GRID x GRID spatial grid
MOVING_THRESHOLD = 0.06  # |colour change| (0..1, max over RGB) above which a pixel is moving
BLOB_THRESHOLD = 0.04  # lower, for blob counting: small far actors blur into faint changes
ACTIVE_CELL_SHARE = 0.05  # a grid cell with at least this share of moving pixels is active
LOCAL_RANK = 3  # local_motion reads the 3rd most moving cell: one actor spans up to ~3 cells
BRIGHT_THRESHOLD = 0.9  # gray level (0..1) above which a pixel counts as saturated
FOREGROUND_THRESHOLD = 0.12  # |colour - background| (0..1, max over RGB) for foreground
PEAK_GRID = 4  # unusual_peak's grid: a cell of a quarter of the width and height, an object's size
UNUSUAL_FACTOR = 6.0  # distance from the background, in the pixel's median distances, that is unusual
STILL_SPAN = 3  # segments a stationary pixel must keep its colour, before and after
CONTEXT_SPAN = 3  # segments averaged by video_context (odd: centred)
CLIP_BATCH = 64  # frames per encoder forward pass


class SegmentFeatureExtractor(Protocol):
    """Turns the decoded frames of one segment into one feature vector."""

    name: str
    dim: int
    decode_size: tuple[int, int]  # (width, height) the decoder resizes frames to; -1 = keep

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """frames: uint8 (S, 2P, H, W, 3): for each of S segments, P (frame, next frame) pairs
        in time order -> float32 (S, dim)."""
        ...

    def segment_part(self, frames: np.ndarray) -> SegmentPart:
        """What each segment gives on its own (frames as in ``__call__``): computed once per segment, so a
        live stream computes it once and keeps it while the segment is in its window."""
        ...

    def window_features(self, part: SegmentPart, reference: SegmentPart | None = None) -> np.ndarray:
        """The S segments' features from their parts (S in time order): ``__call__`` is
        ``window_features(segment_part(frames))``; float32 (S, dim). ``reference``: the segments that
        stand for the usual scene where features are relative to it (a stream's history), else the S."""
        ...


@dataclass(frozen=True)
class SegmentPart:
    """Per-segment results an extractor keeps between its two steps; each array has S rows."""

    values: np.ndarray  # float32 (S, V): the extractor's per-segment values (cues, embeddings)
    keys: np.ndarray | None = None  # float32 (S, H, W, 3) in [0, 1]: each segment's first frame, or None

    def take(self, rows: slice | np.ndarray) -> SegmentPart:
        """The part of the segments ``rows``."""
        return SegmentPart(self.values[rows], None if self.keys is None else self.keys[rows])

    @staticmethod
    def join(parts: list[SegmentPart]) -> SegmentPart:
        """The parts stacked in order (one segment each, or more)."""
        keys = [part.keys for part in parts]
        return SegmentPart(np.concatenate([part.values for part in parts]),
                           None if any(key is None for key in keys) else np.concatenate(keys))


@dataclass(frozen=True)
class VideoFeatures:
    """A video cut into K segments with one feature vector per segment."""

    num_frames: int
    fps: float
    bounds: np.ndarray  # int64 (K, 2), [start, end) frame indices
    features: np.ndarray  # float32 (K, D)
    # int64 (G,) the keyframes the frames were chosen with (decord's numbering); None: not read (snapping off)
    keyframes: np.ndarray | None = None


def pair_indices(
    start: int, end: int, pairs: int, num_frames: int, keyframes: np.ndarray | None = None
) -> np.ndarray:
    """Frames to decode for a segment: one anchor per equal sub-interval, each with its successor
    (motion is measured between adjacent frames, so its scale does not depend on the segment's
    length). The successor of the video's last frame is the frame itself.

    The anchor is the sub-interval's centre, or, when ``keyframes`` (sorted frame indices of
    the video's keyframes) has one inside the sub-interval, its first keyframe: decoding a
    keyframe and its successor costs two frame decodes, while a frame in mid-GOP costs every
    frame since the last keyframe.

    Returns:
        int64 array (2 * min(pairs, end - start),), non-decreasing, pairs interleaved
        ``[a0, a0+1, a1, a1+1, ...]``.
    """
    count = min(pairs, end - start)
    anchors = subinterval_centres(start, end, count)
    if keyframes is not None and len(keyframes):
        edges = start + (np.arange(count + 1) * (end - start)) // count
        first = np.searchsorted(keyframes, edges[:-1])  # first keyframe at or after each edge
        candidate = keyframes[np.minimum(first, len(keyframes) - 1)]
        inside = (first < len(keyframes)) & (candidate < edges[1:])
        anchors = np.where(inside, candidate, anchors)
    return _with_successors(anchors, num_frames)


def _with_successors(anchors: np.ndarray, num_frames: int) -> np.ndarray:
    """int64 (A,) anchors -> (2A,) ``[a0, a0+1, a1, a1+1, ...]``; the last frame's successor is itself."""
    successors = np.minimum(anchors + 1, num_frames - 1)
    return np.stack([anchors, successors], axis=1).reshape(-1)


def window_pairs(
    start: int, end: int, pairs: int, num_frames: int, keyframes: np.ndarray, window: int
) -> np.ndarray:
    """Frames to decode for a segment of a long-GOP video: :func:`pair_indices`' layout, the anchors
    spread over the first ``window`` frames of the segment's decodable start: its first keyframe, or its
    first frame when it holds none (decoding continues from the keyframe before it).

    Returns:
        int64 array (2 * min(pairs, span),), pairs interleaved ``[a0, a0+1, a1, a1+1, ...]``, where span
        is the window's length inside the segment.
    """
    return _with_successors(window_anchors(start, end, keyframes, window, pairs), num_frames)


def segment_frames(
    bounds: np.ndarray, pairs: int, num_frames: int, keyframes: np.ndarray | None, window: int
) -> list[np.ndarray]:
    """The frames decoded for each segment (``bounds`` int (K, 2)): :func:`pair_indices`, unless an
    anchor lies more than ``window`` frames after its keyframe (a long GOP): then :func:`window_pairs`.
    ``window`` 0 or ``keyframes`` None: always :func:`pair_indices`.

    With a keyframe every second or more often and ``window`` one second of frames, every segment keeps
    :func:`pair_indices`' frames; with x264's default GOP (250 frames) the spread anchors would decode
    nearly the whole video, the windows a few dozen frames per GOP.
    """
    out = []
    for start, end in bounds:
        wanted = pair_indices(int(start), int(end), pairs, num_frames, keyframes)
        if window > 0 and keyframes is not None and len(keyframes) \
                and decode_depth(wanted[0::2], keyframes).max() > window:
            wanted = window_pairs(int(start), int(end), pairs, num_frames, keyframes, window)
        out.append(wanted)
    return out


def extract_video_features(
    path: str,
    extractor: SegmentFeatureExtractor,
    num_segments: int,
    frames_per_segment: int,
    decode_threads: int = 1,
    snap_to_keyframes: bool = True,
    max_pixels: int | None = MAX_PIXELS,
    decode_window_s: float = 1.0,
    reader: GopReader | None = None,
    span: int | None = None,
) -> VideoFeatures:
    """Decode ``path`` segment by segment and compute one feature vector per segment.

    ``frames_per_segment`` frames are decoded per segment (``frames_per_segment // 2`` adjacent
    pairs) at the extractor's decode size, then all segments are reduced in one vectorised
    call. Memory is bounded by K x frames_per_segment small frames, not by the video's length.
    ``snap_to_keyframes`` moves anchors onto keyframes where a sub-interval holds one (see
    :func:`pair_indices`), which decodes far fewer frames in videos with short GOPs.
    ``decode_window_s``: in a segment whose anchors lie deeper than this many seconds into their GOP,
    the pairs are taken within that long after its keyframe instead (:func:`segment_frames`); 0 never.
    ``max_pixels``: the largest stream frame to decode (:func:`dualvad.video.decode.open_video`).
    ``reader``: an open :class:`~dualvad.video.gop.GopReader` of ``path`` to decode with (the caller
    reads more frames from it afterwards); by default one is opened and closed here.
    ``span``: cut the video into segments of this many frames instead (the last one shorter;
    ``num_segments`` is then ignored): 16-frame snippets for ``dualvad extract-features``.

    Raises:
        VideoDecodeError: the file cannot be opened or decoded.
        ValueError: the video has fewer frames than ``num_segments``.
    """
    own = reader is None
    reader = reader if reader is not None else GopReader(path, decode_threads, max_pixels)
    try:
        num_frames, fps = len(reader), reader.fps  # container metadata, no decoding
        bounds = _segment_bounds(num_frames, num_segments, span)
        pairs = pairs_per_segment(frames_per_segment)
        keyframes = reader.keyframes if snap_to_keyframes else None
        window = decode_window_frames(decode_window_s, fps)
        wanted = segment_frames(bounds, pairs, num_frames, keyframes, window)
        width, height = extractor.decode_size
        decoded = reader.read(np.concatenate(wanted), width, height)
    finally:
        if own:
            reader.close()
    frames = np.zeros((len(bounds), 2 * pairs, *decoded.shape[1:]), dtype=np.uint8)  # K x F small frames
    offset = 0
    for index, segment in enumerate(wanted):
        # A segment shorter than P frames has fewer pairs: repeat them cyclically (pairs stay aligned).
        frames[index] = decoded[offset + np.arange(2 * pairs) % len(segment)]
        offset += len(segment)
    features = extractor(frames)
    return VideoFeatures(num_frames, fps, bounds, features,
                         None if keyframes is None else np.asarray(keyframes, dtype=np.int64))


def ingested_video_features(path: str, extractor: SegmentFeatureExtractor, ingest: IngestConfig,
                            reader: GopReader | None = None, span: int | None = None) -> VideoFeatures:
    """:func:`extract_video_features` with every decoding setting of ``ingest`` (``ingest.*``: K
    segments, frames per segment, threads, keyframe snapping, the pixel bound, the decode window), as the
    ingest stage computes a video's features; ``reader`` and ``span`` as there."""
    return extract_video_features(path, extractor, ingest.segments, ingest.frames_per_segment,
                                  ingest.decode_threads, ingest.snap_to_keyframes, ingest.max_pixels,
                                  ingest.decode_window_s, reader=reader, span=span)


def _segment_bounds(num_frames: int, num_segments: int, span: int | None) -> np.ndarray:
    """int64 (K, 2) [start, end) frames: ``num_segments`` equal segments, or, with ``span``,
    ceil(num_frames / span) segments of ``span`` frames, the last one to the video's end."""
    if span is None:
        return segment_bounds(num_frames, num_segments)
    starts = np.arange(-(-num_frames // span), dtype=np.int64) * span
    return np.stack([starts, np.minimum(starts + span, num_frames)], axis=1)


class MotionAppearanceExtractor:
    """Hand-made cues from downsampled frames, relative to the video they come from; no weights.

    Each segment first gets ``len(CUES)`` raw cues (:func:`segment_cues`): brightness and
    flashes, moving pixels and where they concentrate, the number of moving blobs, foreground
    against the video's own background, foreground that stands still, a frozen picture, a covered
    or defocused lens, and a cut to another scene (:data:`CUE_GROUPS`). The vector is then made
    relative to the video (:func:`video_context`): each cue minus its median over the video's segments,
    averaged over neighbouring segments, and split into its rise and its drop.

    Layout (dim = 2 * len(CUES)): ``[rise of CUES[0..C), drop of CUES[0..C)]``, both >= 0, in
    the cue's units (gray levels scaled to [0, 1], pixel shares in [0, 1], blob counts).

    Why relative: the synthetic corpus and real surveillance alike vary far more between
    videos (scene, number of actors, their contrast) than within one; a weakly supervised
    scorer given absolute values learns which *videos* are anomalous, while a segment's
    departure from its own video is the anomaly. Why both signs: some anomalies add motion
    (speeding, scattering) and others remove it (a collision: two actors stop).
    """

    name = "motion"

    def __init__(self, width: int = 64, height: int = 48) -> None:
        self.decode_size = (width, height)
        self.dim = 2 * len(CUES)

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """frames: uint8 (S, 2P, H, W, 3), the S segments of one video in time order, each P
        adjacent pairs -> float32 (S, dim). Vectorised over segments: one NumPy pass per video."""
        return self.window_features(self.segment_part(frames))

    def segment_part(self, frames: np.ndarray) -> SegmentPart:
        """The cues each segment gives alone (:data:`LOCAL_CUES`) and its first frame (RGB in [0, 1])."""
        rgb = _rgb(frames)
        return SegmentPart(local_cues(rgb), rgb[:, 0])

    def window_features(self, part: SegmentPart, reference: SegmentPart | None = None) -> np.ndarray:
        """The cues against the segments' background (:func:`window_cues`), then :func:`video_context`;
        with ``reference``, the background and the median segment are the reference segments' instead."""
        assert part.keys is not None
        if reference is None:
            return video_context(join_cues(part.values, window_cues(part.keys)))
        assert reference.keys is not None
        cues = join_cues(part.values, window_cues(part.keys, reference.keys))
        usual = join_cues(reference.values, window_cues(reference.keys))
        return video_context(cues, usual)


CUE_GROUPS: dict[str, tuple[str, ...]] = {
    # Cost per segment (64 x 48, 8 frames, one core, this machine; docs/decisions.md 2026-12-07,
    # issue 28): 0.17-0.27 ms to convert and difference the frames, then brightness 0.02 ms, motion
    # 0.10 ms, foreground 0.14-0.16 ms, frozen 0.01 ms, lens 0.08 ms, scene 0.03 ms; 0.63-0.71 ms in all.
    "brightness": (
        "brightness_max",  # max over frames of the mean gray level: flashes, fire
        "brightness_jump",  # max over pairs of the mean signed gray change
        "saturated_share",  # max over frames of the share of pixels brighter than BRIGHT_THRESHOLD
    ),
    "motion": (
        "local_motion",  # moving share of the LOCAL_RANK-th most moving grid cell: one fast actor
        "active_cells",  # share of grid cells with any real motion: motion spreading out
        "moving_share",  # max over pairs of the share of moving pixels
        "motion_energy",  # mean |colour change| within pairs
        "moving_blobs",  # mean over pairs of connected moving regions: many small actors
    ),
    "foreground": (
        "foreground_share",  # pixels away from the video's background
        "stationary_share",  # foreground pixels unchanged STILL_SPAN segments before and after
        "unusual_share",  # pixels far from the background for that pixel: change where the scene is still
        "unusual_peak",  # the most unusual cell of a 4x4 grid: one object where the scene is still
    ),
    "frozen": FROZEN_CUES,  # dualvad.scorer.cues: a frozen picture
    "lens": LENS_CUES,  # a covered or defocused lens
    "scene": SCENE_CUES,  # a cut to another picture
}
CUES = tuple(cue for group in CUE_GROUPS.values() for cue in group)


# The cues a segment gives alone, and those that compare it with the others' background (the window's).
WINDOW_GROUPS = ("foreground", "scene")
LOCAL_CUES = tuple(cue for group, cues in CUE_GROUPS.items() if group not in WINDOW_GROUPS for cue in cues)
WINDOW_CUES = tuple(cue for group in WINDOW_GROUPS for cue in CUE_GROUPS[group])
_ORDER = np.array([(LOCAL_CUES + WINDOW_CUES).index(cue) for cue in CUES])  # joined columns -> CUES order


def segment_cues(frames: np.ndarray) -> np.ndarray:
    """frames: uint8 (S, 2P, H, W, 3), the S segments of one video -> float32 (S, len(CUES)).

    Cues that compare with a background (foreground, stationary, scene_change) take the video's
    background as the per-pixel median of the first frame of every segment, so they need all the
    video's segments in one call (:func:`window_cues`); the others need only their segment
    (:func:`local_cues`). No cue reads a hue: each treats the colour channels alike.
    """
    rgb = _rgb(frames)
    return join_cues(local_cues(rgb), window_cues(rgb[:, 0]))


def _rgb(frames: np.ndarray) -> np.ndarray:
    """uint8 (...) -> float32 (...) in [0, 1]."""
    return frames.astype(np.float32) * np.float32(1 / 255)


def local_cues(rgb: np.ndarray) -> np.ndarray:
    """rgb float32 (S, 2P, H, W, 3) in [0, 1] -> float32 (S, len(LOCAL_CUES)): each segment's own cues."""
    gray = rgb @ np.full(3, 1 / 3, dtype=np.float32)  # (S, 2P, H, W); matmul beats mean(-1)
    change = _channel_max(np.abs(rgb[:, 1::2] - rgb[:, 0::2]))  # (S, P, H, W); colour-aware
    parts = [*_brightness(gray), *_motion(change), *frozen_cues(change), *lens_cues(gray)]
    return np.stack(parts, axis=1).astype(np.float32)


def window_cues(keys: np.ndarray, reference: np.ndarray | None = None) -> np.ndarray:
    """keys float32 (S, H, W, 3) in [0, 1], the first frame of each of S segments -> float32
    (S, len(WINDOW_CUES)): the cues against their background, the per-pixel median over the S (over the
    R first frames of ``reference`` (R, H, W, 3) when given)."""
    gray = keys @ np.full(3, 1 / 3, dtype=np.float32)
    reference_gray = None if reference is None else reference @ np.full(3, 1 / 3, dtype=np.float32)
    parts = [*_foreground(keys, reference), *scene_cues(gray, reference_gray)]
    return np.stack(parts, axis=1).astype(np.float32)


def join_cues(local: np.ndarray, window: np.ndarray) -> np.ndarray:
    """(S, len(LOCAL_CUES)) and (S, len(WINDOW_CUES)) -> (S, len(CUES)) in :data:`CUES` order."""
    return np.concatenate([local, window], axis=1)[:, _ORDER]


def cue_column_groups(ingest: IngestConfig, dim: int) -> np.ndarray | None:
    """int64 (dim,): the index in :data:`CUE_GROUPS` of each feature column's cue (a cue's rise and drop
    columns, :func:`video_context`'s layout, in its group), for segments the ``motion`` extractor computed;
    None for others (``clip``, feature files), whose columns form no groups."""
    if ingest.feature != "motion" or ingest.features or dim != 2 * len(CUES):
        return None
    group_of = {cue: index for index, cues in enumerate(CUE_GROUPS.values()) for cue in cues}
    return np.array([group_of[cue] for cue in CUES] * 2, dtype=np.int64)


def video_context(cues: np.ndarray, reference: np.ndarray | None = None) -> np.ndarray:
    """cues (S, C) of one video's S segments -> float32 (S, 2C): rise and drop of each cue
    against the video's median segment (the median of ``reference`` (R, C) when given), averaged over
    CONTEXT_SPAN neighbouring segments.

    The average (a centred moving mean, ends repeated) steadies cues measured on a few frame
    pairs per segment; events last several segments, so it costs little localisation.
    """
    deviation = cues - segment_median(cues if reference is None else reference)
    half = CONTEXT_SPAN // 2
    padded = np.pad(deviation, ((half, half), (0, 0)), mode="edge")
    smooth = np.mean([padded[i : i + len(cues)] for i in range(CONTEXT_SPAN)], axis=0)
    return np.concatenate([np.maximum(smooth, 0.0), np.maximum(-smooth, 0.0)], axis=1).astype(np.float32)


def _channel_max(values: np.ndarray) -> np.ndarray:
    """(..., 3) -> (...) max over the colour channels (pairwise maxima: ~10x faster than
    ``max(axis=-1)`` over a length-3 axis)."""
    return np.maximum(np.maximum(values[..., 0], values[..., 1]), values[..., 2])


def _grid_pool(images: np.ndarray, grid: int = GRID) -> np.ndarray:
    """(..., H, W) -> (..., grid, grid) block means (H, W cropped to multiples of grid)."""
    *lead, h, w = images.shape
    h, w = h - h % grid, w - w % grid
    blocks = images[..., :h, :w].reshape(*lead, grid, h // grid, grid, w // grid)
    return blocks.mean(axis=(-3, -1))


def _brightness(gray: np.ndarray) -> list[np.ndarray]:
    """gray (S, 2P, H, W) in [0, 1] -> brightness_max, brightness_jump, saturated_share, each (S,)."""
    level = gray.mean(axis=(2, 3))  # (S, 2P)
    saturated = (gray > BRIGHT_THRESHOLD).mean(axis=(2, 3))
    return [level.max(axis=1), (level[:, 1::2] - level[:, 0::2]).max(axis=1), saturated.max(axis=1)]


def _motion(change: np.ndarray) -> list[np.ndarray]:
    """change (S, P, H, W), max |colour change| within each pair -> local_motion, active_cells,
    moving_share, motion_energy, moving_blobs, each (S,)."""
    moving = (change > MOVING_THRESHOLD).astype(np.float32)
    cells = _grid_pool(moving).reshape(*moving.shape[:2], -1).max(axis=1)  # (S, GRID**2)
    ranked = -np.sort(-cells, axis=1)
    return [
        ranked[:, LOCAL_RANK - 1],
        (cells > ACTIVE_CELL_SHARE).mean(axis=1),
        moving.mean(axis=(2, 3)).max(axis=1),
        change.mean(axis=(1, 2, 3)),
        count_blobs(change > BLOB_THRESHOLD).mean(axis=1),
    ]


def count_blobs(masks: np.ndarray) -> np.ndarray:
    """masks: bool (..., H, W) -> float32 (...): 8-connected regions of each 2-D mask.

    One ``scipy.ndimage.label`` call for the whole stack: the structure connects pixels only
    within a mask, and labels are numbered in scan order, so each mask's regions are the
    labels above the largest label of the masks before it.
    """
    from scipy import ndimage

    flat = masks.reshape(-1, *masks.shape[-2:])
    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = True  # 8-connectivity inside a mask, none across masks
    labels, _ = ndimage.label(flat, structure=structure)
    highest = np.maximum.accumulate(labels.reshape(len(flat), -1).max(axis=1))
    counts = np.diff(highest, prepend=0)
    return counts.reshape(masks.shape[:-2]).astype(np.float32)


def _foreground(key: np.ndarray, reference: np.ndarray | None = None) -> list[np.ndarray]:
    """key (S, H, W, 3): the first frame of each segment -> foreground_share, stationary_share,
    unusual_share, unusual_peak, each (S,). ``reference`` (R, H, W, 3): the first frames the background
    and the usual distances are taken over (``key`` itself by default: the video's).

    A pixel is foreground when its colour is FOREGROUND_THRESHOLD away from the background
    (per-pixel median over the segments: whatever stands somewhere less than half the video),
    and stationary when it also keeps its colour STILL_SPAN segments before and after:
    something that stopped, not something passing through. The first and last STILL_SPAN
    segments lack one side and are never stationary (comparing a segment with itself would
    call every slow actor there stationary).

    A pixel is unusual when its distance from the background is over UNUSUAL_FACTOR times its median
    distance over the video (and at least half the foreground threshold): a per-pixel background
    model, so the same change counts where the scene is normally still and not where it always
    changes (foliage, a window onto traffic, a shaking camera's edges). unusual_peak is the largest
    unusual share of a cell of a PEAK_GRID x PEAK_GRID grid: one object appearing, which the share of the
    whole picture dilutes with whatever else moves.
    """
    reference = key if reference is None else reference
    background = segment_median(reference)
    distance = _channel_max(np.abs(key - background))  # (S, H, W)
    foreground = distance > FOREGROUND_THRESHOLD
    usual = segment_median(distance if reference is key else _channel_max(np.abs(reference - background)))
    unusual = distance > np.maximum(UNUSUAL_FACTOR * usual, FOREGROUND_THRESHOLD / 2)
    still = foreground.copy()
    still[:STILL_SPAN] = still[len(key) - STILL_SPAN :] = False  # no segment to compare with
    same = _channel_max(np.abs(key[STILL_SPAN:] - key[:-STILL_SPAN])) < FOREGROUND_THRESHOLD
    still[STILL_SPAN:] &= same  # as STILL_SPAN segments before
    still[:-STILL_SPAN] &= same  # as STILL_SPAN segments after
    unusual = unusual.astype(np.float32)
    peak = _grid_pool(unusual, PEAK_GRID).reshape(len(key), -1).max(axis=1)
    return [foreground.mean(axis=(1, 2)), still.mean(axis=(1, 2)), unusual.mean(axis=(1, 2)), peak]


class ClipExtractor:
    """Mean-pooled CLIP vision embeddings of a segment's frames (transformers).

    ``model`` is a hub id (``openai/clip-vit-base-patch16`` on a cluster) or a local directory.
    Frames are resized to the encoder's input size by the decoder, then normalised with the
    model's own image mean and std.
    """

    name = "clip"

    def __init__(self, model: str, device: str = "cpu") -> None:
        import torch
        from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

        config = CLIPVisionConfig.from_pretrained(model)
        self._torch = torch
        self._model = CLIPVisionModelWithProjection.from_pretrained(model).to(device).eval()
        self._device = device
        size = config.image_size
        self.decode_size = (size, size)
        self.dim = int(config.projection_dim)
        mean, std = _clip_normalisation(model)
        self._mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self._std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """frames: uint8 (S, T, R, R, 3) at the encoder's resolution R -> float32 (S, projection_dim)."""
        return self.window_features(self.segment_part(frames))

    def segment_part(self, frames: np.ndarray) -> SegmentPart:
        """Each segment's mean embedding (frames as in ``__call__``): the whole feature."""
        torch = self._torch
        segments, per_segment = frames.shape[:2]
        pixels = torch.from_numpy(frames.reshape(-1, *frames.shape[2:])).permute(0, 3, 1, 2).float()
        pixels = ((pixels / 255.0 - self._mean) / self._std).to(self._device)
        with torch.inference_mode():
            embeds = torch.cat([self._model(pixel_values=chunk).image_embeds
                                for chunk in pixels.split(CLIP_BATCH)])  # (S*T, projection_dim)
        return SegmentPart(embeds.view(segments, per_segment, -1).mean(dim=1).float().cpu().numpy())

    def window_features(self, part: SegmentPart, reference: SegmentPart | None = None) -> np.ndarray:
        """The embeddings as they are: nothing depends on the other segments."""
        return part.values


def _clip_normalisation(model: str) -> tuple[list[float], list[float]]:
    """The image mean/std from the model's preprocessor config (CLIP's own if it has none).

    Read from the config file rather than by building an image processor, which would need
    torchvision for its default backend.
    """
    from transformers.image_processing_base import ImageProcessingMixin
    from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

    try:
        settings, _ = ImageProcessingMixin.get_image_processor_dict(model)
    except OSError:
        settings = {}  # a bare model directory, as tests save: CLIP's published constants
    return (list(settings.get("image_mean", OPENAI_CLIP_MEAN)),
            list(settings.get("image_std", OPENAI_CLIP_STD)))


def build_extractor(kind: str, **options: Any) -> SegmentFeatureExtractor:
    """An extractor by name: ``motion`` (options: width, height) or ``clip`` (model, device)."""
    if kind == "motion":
        return MotionAppearanceExtractor(options.get("width", 64), options.get("height", 48))
    if kind == "clip":
        return ClipExtractor(options["model"], options.get("device", "cpu"))
    raise ValueError(f"unknown feature extractor {kind!r}; choose 'motion' or 'clip'")
