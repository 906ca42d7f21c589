"""The benchmark builders' settings (``benchmarks.*``), read by :mod:`dualvad.pipeline.build_benchmarks`."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from dualvad.validation import config_section


@config_section
class BenchmarksConfig:
    """The image and video benchmarks built from the sampled frames."""

    image_size: Annotated[int, Field(ge=1)] = 448  # longer side of stored frames, px (InternVL's tile size)
    jpeg_quality: Annotated[int, Field(ge=1, le=100)] = 90  # PIL's JPEG quality
    clip_frames: Annotated[int, Field(ge=1)] = 8  # k frames per video-benchmark clip
    shards: Annotated[int, Field(ge=1)] = 4  # Parquet shards per benchmark
    # scorer score from which an unannotated frame counts as anomalous
    pseudo_threshold: Annotated[float, Field(ge=0, le=1)] = 0.5
    seed: int = 0  # chooses question paraphrases
    decode_threads: Annotated[int, Field(ge=1)] = 1
