"""Per-segment feature extraction: decode a few frames of each segment, reduce, drop.

Two extractors share one interface (:class:`SegmentFeatureExtractor`):

* ``motion`` (default) needs no weights: appearance statistics of downsampled frames plus
  motion from differences of adjacent frames. It carries the cues surveillance anomalies
  leave: fast or scattering motion, sudden brightness (flashes, fire), objects where they do
  not usually stand, motion that stops.
* ``clip`` embeds frames with a transformers CLIP vision encoder (a hub id on a cluster, a
  local directory holding a tiny random model in tests) and mean-pools them per segment.

Memory does not grow with video length: :func:`extract_video_features` decodes one segment's
frames at a time and keeps only the reduced vector.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from dualvad.video.decode import open_video, read_frames, video_info
from dualvad.video.segments import segment_bounds, subinterval_centres

GRID = 4  # appearance and motion are pooled on a GRID x GRID spatial grid
MOVING_THRESHOLD = 0.08  # |gray difference| (0..1) above which a pixel counts as moving
BRIGHT_THRESHOLD = 0.9  # gray level (0..1) above which a pixel counts as saturated


class SegmentFeatureExtractor(Protocol):
    """Turns the decoded frames of one segment into one feature vector."""

    name: str
    dim: int
    decode_size: tuple[int, int]  # (width, height) the decoder resizes frames to; -1 = keep

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """frames: uint8 (2P, H, W, 3), P (frame, next frame) pairs in time order -> float32 (dim,)."""
        ...


@dataclass(frozen=True)
class VideoFeatures:
    """A video cut into K segments with one feature vector per segment."""

    num_frames: int
    fps: float
    bounds: np.ndarray  # int64 (K, 2), [start, end) frame indices
    features: np.ndarray  # float32 (K, D)


def pair_indices(start: int, end: int, pairs: int, num_frames: int) -> np.ndarray:
    """Frames to decode for a segment: ``pairs`` anchors at sub-interval centres, each with its
    successor (motion is measured between adjacent frames, so its scale does not depend on the
    segment's length). The successor of the video's last frame is the frame itself.

    Returns:
        int64 array (2 * min(pairs, end - start),), sorted, pairs interleaved
        ``[a0, a0+1, a1, a1+1, ...]``.
    """
    anchors = subinterval_centres(start, end, min(pairs, end - start))
    successors = np.minimum(anchors + 1, num_frames - 1)
    return np.stack([anchors, successors], axis=1).reshape(-1)


def extract_video_features(
    path: str,
    extractor: SegmentFeatureExtractor,
    num_segments: int,
    frames_per_segment: int,
    decode_threads: int = 1,
) -> VideoFeatures:
    """Decode ``path`` segment by segment and compute one feature vector per segment.

    ``frames_per_segment`` frames are decoded per segment (``frames_per_segment // 2`` adjacent
    pairs); they are freed before the next segment is decoded.

    Raises:
        VideoDecodeError: the file cannot be opened or decoded.
        ValueError: the video has fewer frames than ``num_segments``.
    """
    width, height = extractor.decode_size
    reader = open_video(path, width=width, height=height, num_threads=decode_threads)
    info = video_info(reader)
    bounds = segment_bounds(info.num_frames, num_segments)
    pairs = max(frames_per_segment // 2, 1)
    features = np.empty((num_segments, extractor.dim), dtype=np.float32)
    for index, (start, end) in enumerate(bounds):
        frames = read_frames(reader, pair_indices(int(start), int(end), pairs, info.num_frames), path)
        features[index] = extractor(frames)
    return VideoFeatures(info.num_frames, info.fps, bounds, features)


class MotionAppearanceExtractor:
    """Hand-made features from downsampled frames; no weights, real signal.

    Layout of the vector (dim = 4 * GRID**2 + 14):
      appearance: GRID x GRID mean gray, GRID x GRID max gray over frames, RGB means,
                  mean and max frame brightness, max saturated-pixel share;
      motion:     GRID x GRID mean |diff|, GRID x GRID max |diff| over pairs,
                  mean/max/std of per-pair mean |diff|, mean and max moving-pixel share,
                  spatial spread of motion (x, y), max signed brightness change.
    """

    name = "motion"

    def __init__(self, width: int = 64, height: int = 48) -> None:
        self.decode_size = (width, height)
        self.dim = 4 * GRID * GRID + 14

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """frames: uint8 (2P, H, W, 3) adjacent pairs -> float32 (dim,)."""
        rgb = frames.astype(np.float32) / 255.0
        gray = rgb.mean(axis=-1)  # (2P, H, W)
        diffs = gray[1::2] - gray[0::2]  # (P, H, W), signed change within each pair
        parts = [*_appearance(rgb, gray), *_motion(np.abs(diffs)), [diffs.mean(axis=(1, 2)).max()]]
        return np.concatenate([np.ravel(p) for p in parts]).astype(np.float32)


def _grid_pool(images: np.ndarray) -> np.ndarray:
    """(T, H, W) -> (T, GRID, GRID) block means (H, W cropped to multiples of GRID)."""
    t, h, w = images.shape
    h, w = h - h % GRID, w - w % GRID
    blocks = images[:, :h, :w].reshape(t, GRID, h // GRID, GRID, w // GRID)
    return blocks.mean(axis=(2, 4))


def _appearance(rgb: np.ndarray, gray: np.ndarray) -> list[np.ndarray]:
    grid = _grid_pool(gray)
    brightness = gray.mean(axis=(1, 2))
    saturated = (gray > BRIGHT_THRESHOLD).mean(axis=(1, 2))
    return [
        grid.mean(axis=0),
        grid.max(axis=0),
        rgb.mean(axis=(0, 1, 2)),
        np.array([brightness.mean(), brightness.max(), saturated.max()]),
    ]


def _motion(abs_diffs: np.ndarray) -> list[np.ndarray]:
    grid = _grid_pool(abs_diffs)
    per_pair = abs_diffs.mean(axis=(1, 2))
    moving = (abs_diffs > MOVING_THRESHOLD).mean(axis=(1, 2))
    return [
        grid.mean(axis=0),
        grid.max(axis=0),
        np.array([per_pair.mean(), per_pair.max(), per_pair.std()]),
        np.array([moving.mean(), moving.max()]),
        _motion_spread(abs_diffs.mean(axis=0)),
    ]


def _motion_spread(energy: np.ndarray) -> np.ndarray:
    """Spatial standard deviation (x, y; in frame widths/heights) of a (H, W) motion map."""
    total = energy.sum()
    if total <= 1e-8:
        return np.zeros(2)
    h, w = energy.shape
    ys, xs = np.linspace(0, 1, h), np.linspace(0, 1, w)
    px, py = energy.sum(axis=0) / total, energy.sum(axis=1) / total
    mean_x, mean_y = (px * xs).sum(), (py * ys).sum()
    return np.sqrt([(px * (xs - mean_x) ** 2).sum(), (py * (ys - mean_y) ** 2).sum()])


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
        """frames: uint8 (T, S, S, 3) at the encoder's size S -> float32 (projection_dim,)."""
        torch = self._torch
        pixels = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0
        pixels = ((pixels - self._mean) / self._std).to(self._device)
        with torch.inference_mode():
            embeds = self._model(pixel_values=pixels).image_embeds  # (T, projection_dim)
        return embeds.mean(dim=0).float().cpu().numpy()


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
