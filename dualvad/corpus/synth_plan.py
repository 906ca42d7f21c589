"""What the synthetic corpus (:mod:`dualvad.corpus.synthetic`) holds: its spec, and each video's label,
split, id and event range, planned before anything is drawn."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated

import numpy as np
from pydantic import Field, model_validator

from dualvad.corpus.layout import NORMAL_LABEL, SYNTHETIC_CATEGORIES, Interval
from dualvad.validation import config_section, rule_error

CATEGORIES = SYNTHETIC_CATEGORIES  # defined in layout: every corpus reader knows them

_EVENT_SHARE = (0.2, 0.45)  # event length as a share of the video


@config_section(frozen=True)
class SynthSpec:
    """What to generate.

    Attributes:
        videos: number of videos.
        seed: seed of every random choice; the same spec gives byte-identical files.
        width, height: frame size in pixels (even numbers >= 32: H.264 yuv420p).
        fps: frames per second.
        seconds: duration of every video; each has `round(fps * seconds)` frames, at least 10.
        anomaly_share: share of anomalous videos (categories round-robin over CATEGORIES).
        test_share: share of each label's videos put in the test split (rounded up, so the
            first video of every category is a test video when `test_share >= 0.5`).
        cameras: 0 gives every video a scene of its own; C >= 1 draws each video's scene from C
            fixed cameras. With a scene per video, a model that sees few videos can tell the
            anomalous training videos apart by their scenery alone; clips of shared cameras differ
            only in what happens in them, as in a real surveillance archive.
    """

    videos: Annotated[int, Field(ge=1)] = 16
    seed: int = 0
    width: Annotated[int, Field(ge=32, multiple_of=2)] = 160
    height: Annotated[int, Field(ge=32, multiple_of=2)] = 120
    fps: Annotated[int, Field(ge=1)] = 15
    seconds: float = 4.0
    anomaly_share: Annotated[float, Field(ge=0, le=1)] = 0.5
    test_share: Annotated[float, Field(ge=0, le=1)] = 0.5
    cameras: Annotated[int, Field(ge=0)] = 0

    @model_validator(mode="after")
    def _enough_frames(self) -> SynthSpec:
        if self.num_frames < 10:
            raise rule_error("seconds", f"must give fps * seconds >= 10 frames (fps {self.fps}), got "
                                        f"{self.seconds!r}")
        return self

    @property
    def num_frames(self) -> int:
        """Frames per video: `round(fps * seconds)`."""
        return round(self.fps * self.seconds)


@dataclass(frozen=True)
class VideoPlan:
    """One video to generate: its id, label, split and event frame range."""

    index: int
    video_id: str
    label: str
    split: str
    event: Interval | None  # half-open [start, end) frames; None for Normal videos


# --------------------------------------------------------------------------- planning


def _takes(i: int, share: float, up: bool) -> bool:
    """Spread `share` of a sequence evenly: True for item `i` when it crosses a step."""
    step = math.ceil if up else math.floor
    return step((i + 1) * share - 1e-9) > step(i * share - 1e-9)


def _event(rng: np.random.Generator, frames: int) -> Interval:
    """A seeded event range `[start, end)` of 20-45% of `frames`, away from the ends."""
    length = max(2, round(frames * rng.uniform(*_EVENT_SHARE)))
    margin = max(1, round(0.05 * frames))
    start = int(rng.integers(margin, max(margin, frames - length - margin) + 1))
    return start, min(frames, start + length)


def plan_corpus(spec: SynthSpec) -> list[VideoPlan]:
    """Labels, splits, ids and event ranges of every video of `spec` (no rendering)."""
    plans, seen = [], {}
    anomalies = 0
    for index in range(spec.videos):
        label = NORMAL_LABEL
        if _takes(index, spec.anomaly_share, up=False):
            label = CATEGORIES[anomalies % len(CATEGORIES)]
            anomalies += 1
        occurrence = seen.get(label, 0)
        seen[label] = occurrence + 1
        split = "test" if _takes(occurrence, spec.test_share, up=True) else "train"
        rng = np.random.default_rng([spec.seed, index, 0])
        event = None if label == NORMAL_LABEL else _event(rng, spec.num_frames)
        video_id = f"{label}/{label.lower()}_{index:04d}.mp4"
        plans.append(VideoPlan(index, video_id, label, split, event))
    return plans


def camera_of(spec: SynthSpec, index: int) -> int:
    """The camera (0 .. cameras - 1) of video `index` when `spec.cameras` > 0: seeded at random, not
    by position, since labels are assigned round-robin and a position rule would tie cameras to them."""
    return int(np.random.default_rng([spec.seed, index, 4]).integers(spec.cameras))


