"""A synthetic corpus shaped like UCF-Crime's videos, for timings: :func:`generate_ucf_like`.

The synthetic corpus (:mod:`dualvad.corpus.synthetic`) is made for tests and training: short videos with a
keyframe every second. What a detector costs depends on the files it gets, and surveillance archives such
as UCF-Crime hold 320 x 240 videos at 30 fps, minutes long, encoded with x264's defaults (a keyframe every
250 frames at most, B-frames). This corpus draws the same scenes and events, encoded that way:

- ``videos`` videos of 320 x 240 whose lengths are spread over a triangular distribution from
  ``min_minutes`` to ``max_minutes`` with its mode at ``mode_minutes`` (defaults 1, 3 and 8 minutes:
  mean 4), taken at evenly spaced quantiles (:func:`video_minutes`) so that even a few videos have the
  distribution's mean, in a seeded order;
- ``hd_videos`` videos of 1280 x 720 of ``hd_minutes`` each (default 4, the mean; the last ids);
- every length multiplied by ``scale``, to shrink the corpus for a quick look.

Labels, splits and event ranges are the synthetic corpus's (:func:`dualvad.corpus.synth_plan.plan_corpus`
over all the videos, with each video's own length), half the videos of each label in the test split.
Videos are rendered and encoded frame by frame: an 8-minute video never sits in memory.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Annotated

import numpy as np
from pydantic import Field, model_validator

from dualvad.corpus.layout import ANNOTATIONS_DIR, VIDEOS_DIR, VideoRecord
from dualvad.corpus.readers import read_corpus
from dualvad.corpus.synth_events import iter_frames
from dualvad.corpus.synth_plan import SynthSpec, VideoPlan, plan_corpus
from dualvad.corpus.synthetic import encode_mp4, write_annotations
from dualvad.validation import config_section, rule_error

FPS = 30
SIZE = (320, 240)  # UCF-Crime's frame size, px
HD_SIZE = (1280, 720)


@config_section(frozen=True)
class UcfLikeSpec:
    """What :func:`generate_ucf_like` generates (module docstring)."""

    videos: Annotated[int, Field(ge=0)] = 16
    hd_videos: Annotated[int, Field(ge=0)] = 2
    min_minutes: Annotated[float, Field(gt=0)] = 1.0
    mode_minutes: Annotated[float, Field(gt=0)] = 3.0
    max_minutes: Annotated[float, Field(gt=0)] = 8.0
    hd_minutes: Annotated[float, Field(gt=0)] = 4.0  # the mean of the 320 x 240 ones
    scale: Annotated[float, Field(gt=0)] = 1.0  # every length is multiplied by it
    seed: int = 0

    @model_validator(mode="after")
    def _ordered(self) -> UcfLikeSpec:
        if not self.min_minutes <= self.mode_minutes <= self.max_minutes:
            raise rule_error("mode_minutes", f"must lie between min_minutes {self.min_minutes} and "
                                             f"max_minutes {self.max_minutes}, got {self.mode_minutes}")
        if self.videos + self.hd_videos < 1:
            raise rule_error("videos", "videos + hd_videos must be >= 1, got 0")
        return self


def triangular_quantile(u: float, low: float, mode: float, high: float) -> float:
    """The ``u``-quantile (0 <= u <= 1) of the triangular distribution on [low, high] with mode ``mode``."""
    if high == low:
        return low
    split = (mode - low) / (high - low)  # the CDF at the mode
    if u <= split:
        return low + math.sqrt(u * (high - low) * (mode - low))
    return high - math.sqrt((1 - u) * (high - low) * (high - mode))


def video_minutes(spec: UcfLikeSpec) -> list[float]:
    """Each video's length in minutes, ``scale`` applied: the 320 x 240 videos' at the quantiles
    ``(i + 0.5) / videos`` of the triangular distribution, in a seeded order, then the HD videos'."""
    quantiles = [triangular_quantile((i + 0.5) / spec.videos, spec.min_minutes, spec.mode_minutes,
                                     spec.max_minutes) for i in range(spec.videos)]
    order = np.random.default_rng([spec.seed, 30]).permutation(spec.videos)
    lengths = [quantiles[i] for i in order] + [spec.hd_minutes] * spec.hd_videos
    return [minutes * spec.scale for minutes in lengths]


def video_specs(spec: UcfLikeSpec) -> list[tuple[SynthSpec, VideoPlan]]:
    """Each video's synthetic spec (its size and length) and plan, in id order."""
    total = spec.videos + spec.hd_videos
    out = []
    for index, minutes in enumerate(video_minutes(spec)):
        width, height = SIZE if index < spec.videos else HD_SIZE
        synth = SynthSpec(videos=total, seed=spec.seed, width=width, height=height, fps=FPS,
                          seconds=minutes * 60, test_share=0.5)
        out.append((synth, plan_corpus(synth)[index]))  # labels and splits do not depend on the length
    return out


def generate_ucf_like(out_dir: str | os.PathLike[str], spec: UcfLikeSpec, processes: int = 1,
                      progress: Callable[[int, int], None] | None = None) -> list[VideoRecord]:
    """Generate the corpus of ``spec`` into ``out_dir`` (videos/ and annotations/), ``processes`` videos at a
    time (each is drawn and encoded on one core); ``progress(done, total)`` after each video. Returns the
    corpus records as :func:`read_corpus` reads them."""
    root = Path(out_dir)
    videos = video_specs(spec)
    jobs = [(root, synth, plan) for synth, plan in videos]
    if processes > 1:
        with ProcessPoolExecutor(processes) as pool:
            for done, _ in enumerate(pool.map(_write_video, jobs), start=1):
                if progress is not None:
                    progress(done, len(jobs))
    else:
        for done, job in enumerate(jobs, start=1):
            _write_video(job)
            if progress is not None:
                progress(done, len(jobs))
    write_annotations(root / ANNOTATIONS_DIR, [plan for _, plan in videos])
    return read_corpus(root)


def _write_video(job: tuple[Path, SynthSpec, VideoPlan]) -> None:
    """Draw and encode one video (long GOP) into ``root/videos/<id>``."""
    root, synth, plan = job
    target = root / VIDEOS_DIR / plan.video_id
    target.parent.mkdir(parents=True, exist_ok=True)
    encode_mp4(iter_frames(synth, plan), target, FPS, long_gop=True)
