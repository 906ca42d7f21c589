"""``dualvad extract-features``: the project's own features of a corpus, written in the published layouts.

Each video is cut into 16-frame snippets (``ceil(N / 16)``, the last one to the video's end) and every
snippet gets one feature vector from ingest's extractor (``ingest.feature``: ``motion``, or ``clip`` on a
GPU where one is there), decoded as ingest decodes a segment (``ingest.frames_per_segment // 2`` pairs of
adjacent frames at the centres of equal sub-intervals, or on keyframes, at the extractor's decode size).
Two crops by default: crop 0 is the whole frame resized to the decode size, crop 1 the same mirrored left to
right (the published sets' crops 0 and 5 are the centre crop and its mirror); ``single`` writes crop 0
alone. The files (:func:`dualvad.corpus.feature_files.save_features`) go beside a JSON record of how they
were made (:data:`METADATA_FILE`), so they can be read back by ``dualvad ingest --features`` and mixed with
a published set of the same extractor.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from dualvad.corpus.feature_files import SNIPPET_FRAMES, save_features
from dualvad.corpus.layout import VideoRecord
from dualvad.scorer.features import SegmentFeatureExtractor, build_extractor, ingested_video_features
from dualvad.video.config import IngestConfig
from dualvad.video.decode import VideoDecodeError

METADATA_FILE = "features.json"


class MirroredCrops:
    """An extractor giving two crops per segment, concatenated: the frames as decoded, then mirrored
    left to right (dim = 2 x the inner extractor's); :func:`split_crops` separates them."""

    def __init__(self, inner: SegmentFeatureExtractor) -> None:
        self.inner, self.name, self.decode_size = inner, inner.name, inner.decode_size
        self.dim = 2 * inner.dim

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """frames uint8 (S, F, H, W, 3) -> float32 (S, 2 D): crop 0's features, then crop 1's."""
        mirrored = np.ascontiguousarray(frames[..., ::-1, :])
        return np.concatenate([self.inner(frames), self.inner(mirrored)], axis=1)


def split_crops(features: np.ndarray, crops: int) -> np.ndarray:
    """float (T, C x D) of concatenated crops -> float32 (T, C, D)."""
    return features.reshape(len(features), crops, -1).astype(np.float32)


@dataclass
class ExtractSummary:
    videos: int
    written: int
    files: int
    failures: list[tuple[str, str]] = field(default_factory=list)  # (video id, reason)
    seconds: float = 0.0
    out: str = ""

    def __str__(self) -> str:
        return (f"extract-features: {self.written} of {self.videos} videos, {self.files} files, "
                f"{len(self.failures)} failures, {self.seconds:.1f} s -> {self.out}")


def crop_geometry(crops: int, size: tuple[int, int]) -> list[dict]:
    """The crops as the metadata file states them."""
    whole = {"crop": 0, "geometry": f"the whole frame resized to {size[0]}x{size[1]} px"}
    return [whole, {"crop": 1, "geometry": "crop 0 mirrored left to right"}][:crops]


def extract_corpus(records: list[VideoRecord], out: str, config: IngestConfig, layout: str,
                   progress: Callable[[int, int], None] | None = None) -> ExtractSummary:
    """Write every video's snippet features under ``out`` in ``layout`` (``crops``, ``stacked`` or
    ``single``; ``auto`` is ``crops``) and the metadata file; a video that does not decode is a failure in
    the summary and the metadata, never a crash. ``progress(done, total)`` is called after each video."""
    started = time.perf_counter()
    layout = "crops" if layout == "auto" else layout
    crops = 1 if layout == "single" else 2
    inner = build_extractor(config.feature, width=config.decode_width, height=config.decode_height,
                            model=config.clip_model, device=_device() if config.feature == "clip" else "cpu")
    extractor = inner if crops == 1 else MirroredCrops(inner)
    summary = ExtractSummary(len(records), 0, 0, out=out)
    snippets: dict[str, int] = {}
    for done, record in enumerate(records, 1):
        if progress is not None:
            progress(done - 1, len(records))
        try:
            video = ingested_video_features(record.path, extractor, config, span=SNIPPET_FRAMES)
        except (VideoDecodeError, ValueError) as error:
            summary.failures.append((record.video_id, str(error)))
            continue
        summary.files += len(save_features(out, record.video_id, split_crops(video.features, crops), layout))
        summary.written += 1
        snippets[record.video_id] = len(video.features)
    if progress is not None:
        progress(len(records), len(records))
    metadata = {"model": config.clip_model if config.feature == "clip" else config.feature,
                "feature": config.feature, "dim": inner.dim, "snippet_frames": SNIPPET_FRAMES,
                "snippets": "ceil(frames / 16) per video, the last one to the video's end",
                "frame_sampling": f"{max(config.frames_per_segment // 2, 1)} pairs of adjacent frames per "
                                  "snippet, at the centres of equal sub-intervals"
                                  + (" or on their first keyframe" if config.snap_to_keyframes else ""),
                "resolution": list(inner.decode_size), "crops": crop_geometry(crops, inner.decode_size),
                "layout": layout, "videos": snippets,
                "failures": [{"video_id": vid, "reason": reason} for vid, reason in summary.failures]}
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, METADATA_FILE), "w") as file:
        json.dump(metadata, file, indent=2)
    summary.seconds = time.perf_counter() - started
    return summary


def _device() -> str:
    """``cuda`` where torch sees a GPU (the clip extractor then runs there), else ``cpu``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
