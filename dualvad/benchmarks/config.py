"""The benchmark builders' settings (``benchmarks.*``), read by :mod:`dualvad.pipeline.build_benchmarks`."""

from __future__ import annotations

from dataclasses import dataclass

from dualvad.checks import at_least, at_most


@dataclass
class BenchmarksConfig:
    """The image and video benchmarks built from the sampled frames."""

    image_size: int = 448  # longer side of stored frames, px (InternVL's tile size)
    jpeg_quality: int = 90  # PIL's JPEG quality, 1-100
    clip_frames: int = 8  # k frames per video-benchmark clip
    shards: int = 4  # Parquet shards per benchmark
    pseudo_threshold: float = 0.5  # scorer score from which an unannotated frame counts as anomalous
    seed: int = 0  # chooses question paraphrases
    decode_threads: int = 1

    def __post_init__(self) -> None:
        at_least(self, 1, "image_size", "jpeg_quality", "clip_frames", "shards", "decode_threads")
        at_most(self, 100, "jpeg_quality")
        at_least(self, 0, "pseudo_threshold")
        at_most(self, 1, "pseudo_threshold")
