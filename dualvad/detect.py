"""``dualvad detect``: a trained run's detector on new, unlabelled videos, with no Ray and no server.

Each video gets the endpoint's JSON (``POST /v1/detect``'s response less ``request_id`` and
``thumbnails``), one object per line, in the order given; a file that is not a usable video is a line with
its ``error`` instead, and the others are still scored.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any

from dualvad.corpus.layout import VIDEO_EXTENSIONS, has_video_extension
from dualvad.detector import DetectOptions, Detector, InvalidVideoError
from dualvad.video.decode import VideoDecodeError


@dataclass(frozen=True)
class DetectSummary:
    """What one ``dualvad detect`` call did."""

    videos: int
    failed: int
    seconds: float
    out: str  # the JSON Lines file, or "-" for stdout

    def __str__(self) -> str:
        return (f"detect: {self.videos - self.failed} of {self.videos} videos scored, {self.failed} failed, "
                f"{self.seconds:.1f} s -> {self.out}")


def video_files(inputs: Sequence[str]) -> list[str]:
    """The videos named by ``inputs``: files as given, folders walked (sorted, by extension).

    Raises:
        FileNotFoundError: an input does not exist, or a folder holds no video; the message names it.
    """
    found: list[str] = []
    for item in inputs:
        if os.path.isfile(item):
            found.append(item)
        elif os.path.isdir(item):
            inside = sorted(os.path.join(root, name) for root, _, names in os.walk(item)
                            for name in names if has_video_extension(name))
            if not inside:
                raise FileNotFoundError(f"{item}: a folder with no video file "
                                        f"({', '.join(VIDEO_EXTENSIONS)})")
            found += inside
        else:
            raise FileNotFoundError(f"{item}: no such file or folder")
    return found


def detect_videos(detector: Detector, paths: Sequence[str],
                  options: DetectOptions) -> Iterator[dict[str, Any]]:
    """One JSON-ready record per path, in order: ``{"video_path", "models", **Detection.to_dict()}``, or
    ``{"video_path", "error"}`` for a file that is not a usable video."""
    models = {"run": detector.analyzer.run.uri, "vlm": detector.frame_judge.vlm_path}
    for path in paths:
        try:
            detection = detector.detect(path, options)
        except (InvalidVideoError, VideoDecodeError) as error:
            yield {"video_path": path, "error": str(error)}
            continue
        yield {"video_path": path, **detection.to_dict(), "models": models}


def run_detect(detector: Detector, paths: Sequence[str], options: DetectOptions, out: IO[str], out_name: str,
               progress: Callable[[int, int], None] | None = None) -> DetectSummary:
    """Write :func:`detect_videos`' records to ``out`` as JSON Lines (flushed per video, so a long call's
    finished videos are on disk); ``progress(done, total)`` after each."""
    started, failed = time.perf_counter(), 0
    for done, record in enumerate(detect_videos(detector, paths, options), start=1):
        out.write(json.dumps(record) + "\n")
        out.flush()
        if "error" in record:
            failed += 1
            print(f"detect: {record['video_path']}: {record['error']}", file=sys.stderr)
        if progress is not None:
            progress(done, len(paths))
    return DetectSummary(len(paths), failed, time.perf_counter() - started, out_name)
