"""Per-segment feature extraction: decode a few frames of each segment, reduce, drop.

Two extractors share one interface (:class:`SegmentFeatureExtractor`):

* ``motion`` (default) needs no weights: appearance statistics of downsampled frames plus
  motion from differences of adjacent frames. It carries the cues surveillance anomalies
  leave: fast or scattering motion, sudden brightness (flashes, fire), objects where they do
  not usually stand, motion that stops.
* ``clip`` embeds frames with a transformers CLIP vision encoder (a hub id on a cluster, a
  local directory holding a tiny random model in tests) and mean-pools them per segment.

Memory does not grow with video length: :func:`extract_video_features` decodes a fixed number
of frames per segment, at a small decode size, and keeps nothing else of the video.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from dualvad.video.decode import open_video, read_frames
from dualvad.video.segments import segment_bounds, subinterval_centres

GRID = 4  # appearance and motion are pooled on a GRID x GRID spatial grid
MOVING_THRESHOLD = 0.08  # |gray difference| (0..1) above which a pixel counts as moving
BRIGHT_THRESHOLD = 0.9  # gray level (0..1) above which a pixel counts as saturated
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


@dataclass(frozen=True)
class VideoFeatures:
    """A video cut into K segments with one feature vector per segment."""

    num_frames: int
    fps: float
    bounds: np.ndarray  # int64 (K, 2), [start, end) frame indices
    features: np.ndarray  # float32 (K, D)


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
    successors = np.minimum(anchors + 1, num_frames - 1)
    return np.stack([anchors, successors], axis=1).reshape(-1)


def extract_video_features(
    path: str,
    extractor: SegmentFeatureExtractor,
    num_segments: int,
    frames_per_segment: int,
    decode_threads: int = 1,
    snap_to_keyframes: bool = True,
) -> VideoFeatures:
    """Decode ``path`` segment by segment and compute one feature vector per segment.

    ``frames_per_segment`` frames are decoded per segment (``frames_per_segment // 2`` adjacent
    pairs) at the extractor's decode size, then all segments are reduced in one vectorised
    call. Memory is bounded by K x frames_per_segment small frames, not by the video's length.
    ``snap_to_keyframes`` moves anchors onto keyframes where a sub-interval holds one (see
    :func:`pair_indices`), which decodes far fewer frames in videos with short GOPs.

    Raises:
        VideoDecodeError: the file cannot be opened or decoded.
        ValueError: the video has fewer frames than ``num_segments``.
    """
    width, height = extractor.decode_size
    reader = open_video(path, width=width, height=height, num_threads=decode_threads)
    num_frames, fps = len(reader), float(reader.get_avg_fps())  # container metadata, no decoding
    bounds = segment_bounds(num_frames, num_segments)
    pairs = max(frames_per_segment // 2, 1)
    keyframes = np.asarray(reader.get_key_indices(), dtype=np.int64) if snap_to_keyframes else None
    frames = None  # (K, 2P, H, W, 3): K x F small frames whatever the video's length
    for index, (start, end) in enumerate(bounds):
        wanted = pair_indices(int(start), int(end), pairs, num_frames, keyframes)
        decoded = read_frames(reader, wanted, path)
        if frames is None:
            frames = np.zeros((num_segments, 2 * pairs, *decoded.shape[1:]), dtype=np.uint8)
        # A segment shorter than P frames has fewer pairs: repeat them cyclically (pairs stay aligned).
        frames[index] = decoded[np.arange(2 * pairs) % len(decoded)]
    features = extractor(frames)
    return VideoFeatures(num_frames, fps, bounds, features)


class MotionAppearanceExtractor:
    """Hand-made features from downsampled frames; no weights, real signal.

    Layout of the vector (dim = 4 * GRID**2 + 14):
      appearance: GRID x GRID mean gray, GRID x GRID max gray over frames, RGB means,
                  mean and max frame brightness, max saturated-pixel share;
      motion:     GRID x GRID mean |diff|, GRID x GRID max |diff| over pairs,
                  mean/max/std of per-pair mean |diff|, mean and max moving-pixel share,
                  spatial spread of motion (x, y), max signed brightness change.
    All values are in gray levels scaled to [0, 1] (or shares in [0, 1]).
    """

    name = "motion"

    def __init__(self, width: int = 64, height: int = 48) -> None:
        self.decode_size = (width, height)
        self.dim = 4 * GRID * GRID + 14

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """frames: uint8 (S, 2P, H, W, 3), S segments of P adjacent pairs -> float32 (S, dim).

        Vectorised over segments: one NumPy pass per video rather than one per segment.
        """
        rgb = frames.astype(np.float32) * np.float32(1 / 255)
        gray = rgb @ np.full(3, 1 / 3, dtype=np.float32)  # (S, 2P, H, W); matmul beats mean(-1)
        diffs = gray[:, 1::2] - gray[:, 0::2]  # (S, P, H, W), signed change within each pair
        brightness_jump = diffs.mean(axis=(2, 3)).max(axis=1, keepdims=True)
        parts = [*_appearance(rgb, gray), *_motion(np.abs(diffs)), brightness_jump]
        return np.concatenate([p.reshape(len(frames), -1) for p in parts], axis=1).astype(np.float32)


def _grid_pool(images: np.ndarray) -> np.ndarray:
    """(S, T, H, W) -> (S, T, GRID, GRID) block means (H, W cropped to multiples of GRID)."""
    s, t, h, w = images.shape
    h, w = h - h % GRID, w - w % GRID
    blocks = images[:, :, :h, :w].reshape(s, t, GRID, h // GRID, GRID, w // GRID)
    return blocks.mean(axis=(3, 5))


def _appearance(rgb: np.ndarray, gray: np.ndarray) -> list[np.ndarray]:
    """rgb (S, T, H, W, 3), gray (S, T, H, W) -> per-segment arrays, first axis S."""
    grid = _grid_pool(gray)
    brightness = gray.mean(axis=(2, 3))  # (S, T)
    saturated = (gray > BRIGHT_THRESHOLD).mean(axis=(2, 3))
    return [
        grid.mean(axis=1),
        grid.max(axis=1),
        np.einsum("snc->sc", rgb.reshape(len(rgb), -1, 3)) / (rgb.size // (3 * len(rgb))),
        np.stack([brightness.mean(axis=1), brightness.max(axis=1), saturated.max(axis=1)], axis=1),
    ]


def _motion(abs_diffs: np.ndarray) -> list[np.ndarray]:
    """abs_diffs (S, P, H, W) -> per-segment arrays, first axis S."""
    grid = _grid_pool(abs_diffs)
    per_pair = abs_diffs.mean(axis=(2, 3))  # (S, P)
    moving = (abs_diffs > MOVING_THRESHOLD).mean(axis=(2, 3))
    return [
        grid.mean(axis=1),
        grid.max(axis=1),
        np.stack([per_pair.mean(axis=1), per_pair.max(axis=1), per_pair.std(axis=1)], axis=1),
        np.stack([moving.mean(axis=1), moving.max(axis=1)], axis=1),
        _motion_spread(abs_diffs.mean(axis=1)),
    ]


def _motion_spread(energy: np.ndarray) -> np.ndarray:
    """Spatial standard deviation (x, y; in frame widths/heights) of (S, H, W) motion maps -> (S, 2).

    A segment without motion has spread 0.
    """
    _, h, w = energy.shape
    total = energy.sum(axis=(1, 2))
    safe = np.where(total > 1e-8, total, 1.0)[:, None]
    px, py = energy.sum(axis=1) / safe, energy.sum(axis=2) / safe  # (S, W), (S, H)
    xs, ys = np.linspace(0, 1, w, dtype=np.float32), np.linspace(0, 1, h, dtype=np.float32)
    mean_x, mean_y = (px * xs).sum(axis=1, keepdims=True), (py * ys).sum(axis=1, keepdims=True)
    var_x, var_y = (px * (xs - mean_x) ** 2).sum(axis=1), (py * (ys - mean_y) ** 2).sum(axis=1)
    return np.sqrt(np.maximum(np.stack([var_x, var_y], axis=1), 0.0))


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
        torch = self._torch
        segments, per_segment = frames.shape[:2]
        pixels = torch.from_numpy(frames.reshape(-1, *frames.shape[2:])).permute(0, 3, 1, 2).float()
        pixels = ((pixels / 255.0 - self._mean) / self._std).to(self._device)
        with torch.inference_mode():
            embeds = torch.cat([self._model(pixel_values=chunk).image_embeds
                                for chunk in pixels.split(CLIP_BATCH)])  # (S*T, projection_dim)
        return embeds.view(segments, per_segment, -1).mean(dim=1).float().cpu().numpy()


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
