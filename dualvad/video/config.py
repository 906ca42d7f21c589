"""The ingest settings (``ingest.*``): decoding each video into K segments with one feature vector each.

Read by the ingest stage (``dualvad.pipeline.ingest``), which decodes with :mod:`dualvad.video.decode`,
cuts segments with :mod:`dualvad.video.segments` and computes features with
:func:`dualvad.scorer.features.build_extractor`.
"""

from __future__ import annotations

import typing
from dataclasses import field
from typing import Annotated, Literal

from pydantic import Field

from dualvad.validation import config_section
from dualvad.video.decode import MAX_PIXELS

# "motion": hand-made motion/appearance cues (no weights); "clip": a transformers image encoder
FeatureKind = Literal["motion", "clip"]
FEATURE_KINDS: tuple[str, ...] = typing.get_args(FeatureKind)
# how per-video feature files are laid out (dualvad.corpus.feature_files): "auto" recognises it per video
FeaturesLayout = Literal["auto", "crops", "stacked", "single"]
# "pool": every video's snippets averaged into K segments; "keep_test": the test split's videos keep one
# segment per snippet (the field scores test videos per snippet), the training videos are pooled
FeaturesSnippets = Literal["pool", "keep_test"]


@config_section
class IngestConfig:
    """Decoding videos into K segments with one feature vector each."""

    segments: Annotated[int, Field(ge=1)] = 32  # K, the WSVAD convention
    frames_per_segment: Annotated[int, Field(ge=1)] = 8  # frames decoded per segment to compute its feature
    feature: FeatureKind = "motion"
    decode_width: Annotated[int, Field(ge=1)] = 64  # frames are resized while decoding (motion feature); px
    decode_height: Annotated[int, Field(ge=1)] = 48
    clip_model: str = "openai/clip-vit-base-patch16"  # id or local path, for feature=clip
    workers: Annotated[int, Field(ge=1)] | None = None  # actor pool size; None = up to one per CPU
    cpus_per_worker: Annotated[float, Field(gt=0)] = 1.0
    decode_threads: Annotated[int, Field(ge=1)] = 1  # decord decoding threads per worker
    snap_to_keyframes: bool = True  # anchor sampled frames on keyframes where a sub-interval has one
    # in a segment whose anchors lie deeper into their GOP than this (s), the pairs are taken within this
    # long after its keyframe instead (dualvad.scorer.features.segment_frames): long-GOP videos (x264's
    # default keyint 250) decode a few dozen frames per GOP, not most; 0 = never (needs snap_to_keyframes)
    decode_window_s: Annotated[float, Field(ge=0)] = 1.0
    # a video whose frames are larger (width x height, pixels) is a recorded failure, refused before decoding:
    # the decoder holds frames of the stream's own size, so this bounds a worker's decoding memory
    max_pixels: Annotated[int, Field(ge=1)] = MAX_PIXELS
    # anomaly categories the corpus's labels may use besides the known ones (dualvad.corpus.layout:
    # the synthetic corpus's, UCF-Crime's and XD-Violence's); any other label is an error
    categories: list[str] = field(default_factory=list)
    # a local folder of per-video feature files (dualvad.corpus.feature_files: the published UCF-Crime and
    # XD-Violence layouts, or `dualvad extract-features`): ingest reads the segment features there instead of
    # decoding the videos, which may then be absent; "" = decode the videos
    features: str = ""
    features_layout: FeaturesLayout = "auto"  # recognised from names and ranks, or named where ambiguous
    features_snippets: FeaturesSnippets = "pool"
    # frame rate recorded for a video whose file is absent (UCF-Crime's 30; XD-Violence's 24), frames/s
    features_fps: Annotated[float, Field(gt=0)] = 30.0

    #: The keys that matter only with ``features`` set (left out of the stage's fingerprint otherwise, so
    #: runs ingested from videos keep theirs).
    FEATURE_FILE_KEYS: typing.ClassVar[tuple[str, ...]] = ("features", "features_layout", "features_snippets",
                                                            "features_fps")


#: What a run ingested before an ingest setting existed used, for the settings that change features: its
#: record lacks the key (records keep the settings of their day). Before decode_window_s, pairs were spread.
SETTINGS_BEFORE: dict[str, object] = {"decode_window_s": 0.0}
