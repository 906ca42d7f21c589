"""What the synthetic corpus (:mod:`dualvad.corpus.synthetic`) holds: its spec, and each video's label,
split, id and event range, planned before anything is drawn."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dualvad.corpus.layout import NORMAL_LABEL, SYNTHETIC_CATEGORIES, Interval

CATEGORIES = SYNTHETIC_CATEGORIES  # defined in layout: every corpus reader knows them

_EVENT_SHARE = (0.2, 0.45)  # event length as a share of the video


@dataclass(frozen=True)
class SynthSpec:
    """What to generate.

    Attributes:
        videos: number of videos.
        seed: seed of every random choice; the same spec gives byte-identical files.
        width, height: frame size in pixels (even numbers: H.264 yuv420p).
        fps: frames per second.
        seconds: duration of every video; each has `round(fps * seconds)` frames.
        anomaly_share: share of anomalous videos (categories round-robin over CATEGORIES).
        test_share: share of each label's videos put in the test split (rounded up, so the
            first video of every category is a test video when `test_share >= 0.5`).
        cameras: 0 gives every video a scene of its own; C >= 1 draws each video's scene from C
            fixed cameras. With a scene per video, a model that sees few videos can tell the
            anomalous training videos apart by their scenery alone; clips of shared cameras differ
            only in what happens in them, as in a real surveillance archive.
    """

    videos: int = 16
    seed: int = 0
    width: int = 160
    height: int = 120
    fps: int = 15
    seconds: float = 4.0
    anomaly_share: float = 0.5
    test_share: float = 0.5
    cameras: int = 0

    def __post_init__(self) -> None:
        problems = []
        if self.videos < 1:
            problems.append(f"videos={self.videos} must be >= 1")
        if self.width < 32 or self.height < 32 or self.width % 2 or self.height % 2:
            problems.append(f"width x height = {self.width} x {self.height} must be even, >= 32")
        if self.fps < 1:
            problems.append(f"fps={self.fps} must be >= 1")
        if self.cameras < 0:
            problems.append(f"cameras={self.cameras} must be >= 0 (0: a scene per video)")
        if self.num_frames < 10:
            problems.append(f"fps * seconds = {self.fps * self.seconds:g} must be >= 10 frames")
        for name in ("anomaly_share", "test_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                problems.append(f"{name}={getattr(self, name)} must be in [0, 1]")
        if problems:
            raise ValueError("SynthSpec: " + "; ".join(problems))

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


