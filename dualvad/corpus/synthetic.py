"""A synthetic surveillance corpus: real H.264 mp4 files with known anomalous frame ranges.

Each video is a fixed camera over a textured scene (grass, a road with lane marks, a few
fixed blocks, and a tinted, bordered forbidden zone drawn in every video, in a paint of random hue:
no colour marks a category). By default
every video has a scene of its own; with `cameras = C` the videos are clips of C fixed cameras,
each video's camera drawn at random (so a camera holds normal and anomalous clips alike), 3-6
objects moving smoothly at normal speed (straight or gently curving, bouncing off the frame
edges and off the forbidden zone) and, in about half the videos, a slowly milling crowd of
small dots.
Anomalous videos hold one event in a seeded frame range `[start, end)` covering 20-45% of
the video:

- Speeding: one object moves 5-8x faster than normal during the event.
- Collision: two objects converge at normal speed, meet at the event start, and both stand
  still until its end.
- Explosion: a white-yellow disc expands while the whole frame brightens, then decays.
- Intrusion: an object drives into the forbidden zone at the event start and leaves it at
  the event end.
- Scattering: a crowd of 10-20 dots flies apart radially, at constant speed from the event
  start until it stops at the event end.

Everything is drawn with NumPy and encoded with PyAV's bundled libx264 (one thread, so the
same `SynthSpec` gives byte-identical files on any machine).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Protocol

import numpy as np

from dualvad.corpus.layout import (
    ANNOTATIONS_DIR,
    TEMPORAL_FILE,
    TEST_LIST,
    TRAIN_LIST,
    VIDEOS_DIR,
    VideoRecord,
)
from dualvad.corpus.readers import read_corpus
from dualvad.corpus.synth_events import render_video
from dualvad.corpus.synth_plan import SynthSpec, plan_corpus
from dualvad.files import write_atomic

# --------------------------------------------------------------------------- writing


def encode_mp4(frames: Iterable[np.ndarray], path: str | os.PathLike[str], fps: int,
               long_gop: bool = False) -> None:
    """Encode `frames` (T, H, W, 3) uint8 RGB (an array, or any iterable of (H, W, 3) frames) as H.264
    yuv420p mp4 at `fps`, atomically.

    Byte-identical output for identical frames: one encoder thread and `tune=zerolatency`
    (no B-frames, no lookahead; with them x264 output varied between runs when the height is
    not a multiple of 16). A 1-second GOP keeps random access cheap for decoders.

    `long_gop`: x264's own defaults instead, as camera archives such as UCF-Crime's were encoded: a
    keyframe every 250 frames at most (more at scene cuts), B-frames, lookahead; still one thread.
    """
    write_atomic(path, lambda temp: _encode(frames, temp, fps, long_gop))


def _encode(frames: Iterable[np.ndarray], path: str, fps: int, long_gop: bool) -> None:
    """:func:`encode_mp4` into ``path`` as it is, not atomically."""
    import av  # heavy optional dependency, imported where it is used

    options = {"threads": "1", "preset": "veryfast", "crf": "20"}
    if not long_gop:
        options.update({"tune": "zerolatency", "g": str(fps)})
    with av.open(path, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.pix_fmt = "yuv420p"
        stream.codec_context.thread_count = 1
        for index, array in enumerate(frames):
            if index == 0:  # the size is known once the first frame is
                stream.width, stream.height = array.shape[1], array.shape[0]
                stream.options = options
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")
            frame.pts, frame.time_base = index, Fraction(1, fps)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def _write_text(path: Path, lines: list[str]) -> None:
    """Write `lines` to `path` atomically, one per line, UTF-8."""
    write_atomic(path, "".join(line + "\n" for line in lines).encode("utf-8"))


class PlannedVideo(Protocol):
    """What the annotation files say of a generated video (a synthetic or a real-footage plan)."""

    @property
    def video_id(self) -> str: ...  # path under videos/
    @property
    def label(self) -> str: ...
    @property
    def split(self) -> str: ...
    @property
    def event(self) -> tuple[int, int] | None: ...  # half-open frame range, None for a normal video


def write_annotations(ann: Path, plans: Sequence[PlannedVideo]) -> None:
    """train.txt, test.txt and test_temporal.txt (UCF format, test videos only) of ``plans``, in order."""
    ann.mkdir(parents=True, exist_ok=True)
    for split, name in (("train", TRAIN_LIST), ("test", TEST_LIST)):
        _write_text(ann / name, [f"{p.video_id} {p.label}" for p in plans if p.split == split])
    temporal = []
    for p in plans:
        if p.split == "test":
            s, e = p.event if p.event is not None else (-1, -1)
            temporal.append(f"{p.video_id}  {p.label}  {s}  {e}  -1  -1")
    _write_text(ann / TEMPORAL_FILE, temporal)


def generate_corpus(
    out_dir: str | os.PathLike[str],
    spec: SynthSpec,
    progress: Callable[[int, int], None] | None = None,
) -> list[VideoRecord]:
    """Generate the synthetic corpus of `spec` into `out_dir` (videos/ and annotations/).

    Existing files of the same names are overwritten; other files are left alone.

    Args:
        out_dir: corpus folder, created if missing.
        spec: what to generate.
        progress: called as `progress(done, total)` after each video.

    Returns:
        the corpus records, exactly as `read_corpus(out_dir)` returns them.
    """
    root = Path(out_dir)
    plans = plan_corpus(spec)
    for done, plan in enumerate(plans, start=1):
        target = root / VIDEOS_DIR / plan.video_id
        target.parent.mkdir(parents=True, exist_ok=True)
        encode_mp4(render_video(spec, plan), target, spec.fps)
        if progress is not None:
            progress(done, len(plans))
    write_annotations(root / ANNOTATIONS_DIR, plans)
    return read_corpus(root)
