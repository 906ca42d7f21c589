"""``dualvad detect``: a trained run's detector on new, unlabelled videos, with no Ray and no server.

Each video gets the endpoint's JSON (``POST /v1/detect``'s response less ``request_id`` and
``thumbnails``), one object per line, in the order given; a file that is not a usable video is a line with
its ``error`` instead, and the others are still scored. With a report path, :func:`write_detect_report`
also writes one self-contained HTML page of those records (the template ``detect_report.html``): a table
of verdicts and one score timeline per video (:func:`dualvad.eval.plots.timeline_png`, as the evaluation
report draws them).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from dualvad.corpus.layout import UNLABELLED, VIDEO_EXTENSIONS, has_video_extension
from dualvad.detector import Detector, InvalidVideoError
from dualvad.detector_schema import DetectOptions
from dualvad.eval.plots import timeline_png
from dualvad.eval.results import VideoResult
from dualvad.files import safe_names, write_atomic
from dualvad.pages import render
from dualvad.video.decode import VideoDecodeError


@dataclass(frozen=True)
class DetectSummary:
    """What one ``dualvad detect`` call did."""

    videos: int
    failed: int
    seconds: float
    out: str  # the JSON Lines file, or "-" for stdout
    report: str | None = None  # the HTML page, when one was asked for

    def __str__(self) -> str:
        report = f", report {self.report}" if self.report else ""
        return (f"detect: {self.videos - self.failed} of {self.videos} videos scored, {self.failed} failed, "
                f"{self.seconds:.1f} s -> {self.out}{report}")


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
    """One JSON-ready record per path, in order: ``{"video_path", **DetectionResult}`` (the endpoint's
    answer, :meth:`dualvad.detector.Detection.result`), or ``{"video_path", "error"}`` for a file that is
    not a usable video."""
    models = detector.models()
    for path in paths:
        try:
            detection = detector.detect(path, options)
        except (InvalidVideoError, VideoDecodeError) as error:
            yield {"video_path": path, "error": str(error)}
            continue
        yield {"video_path": path, **detection.result(models).model_dump()}


def run_detect(detector: Detector, paths: Sequence[str], options: DetectOptions, out: IO[str], out_name: str,
               progress: Callable[[int, int], None] | None = None,
               report: str | os.PathLike[str] | None = None) -> DetectSummary:
    """Write :func:`detect_videos`' records to ``out`` as JSON Lines (flushed per video, so a long call's
    finished videos are on disk); ``progress(done, total)`` after each; with ``report``, the HTML page of
    :func:`write_detect_report` once every video is done."""
    started, records = time.perf_counter(), []
    for done, record in enumerate(detect_videos(detector, paths, options), start=1):
        out.write(json.dumps(record) + "\n")
        out.flush()
        records.append(record)
        if "error" in record:
            print(f"detect: {record['video_path']}: {record['error']}", file=sys.stderr)
        if progress is not None:
            progress(done, len(paths))
    if report is not None:
        threshold = detector.analyzer.verdict.threshold if options.threshold is None else options.threshold
        write_detect_report(report, records, detector.models(), threshold)
    failed = sum("error" in record for record in records)
    return DetectSummary(len(paths), failed, time.perf_counter() - started, out_name,
                         None if report is None else str(report))


# ---------------------------------------------------------------------------------------------- report


@dataclass(frozen=True)
class ReportVideo:
    """One record as the page shows it: ``name`` its anchor (file-name-safe), then either ``error`` or its
    timeline PNG and its highest-scoring clip (``None`` where no clip has an explanation)."""

    name: str
    record: dict[str, Any]
    timeline: bytes = b""
    clip: dict[str, Any] | None = None

    @property
    def path(self) -> str:
        return self.record["video_path"]

    @property
    def error(self) -> str | None:
        return self.record.get("error")


def write_detect_report(path: str | os.PathLike[str], records: Sequence[dict[str, Any]],
                        models: dict[str, str], threshold: float) -> Path:
    """One self-contained HTML page (inline CSS, PNGs as data URIs, no script) of ``dualvad detect``'s
    records: a table with each video's verdict, video score and category, then per video its score
    timeline (the VLM's segment scores with its sampled frames' P(Yes) as dots, the scorer's and the
    verdict's segment scores as thin lines) and the explanation of its highest-scoring clip; a failed video
    shows its error.

    Args:
        path: the HTML file (its folder is created; written atomically).
        records: :func:`detect_videos`' records, in order.
        models: ``{"run", "vlm"}``, named in the page's header.
        threshold: the video score at or above which a video is anomalous (named in the header).
    """
    names = safe_names([record["video_path"] for record in records])
    videos = [_report_video(record, name) for record, name in zip(records, names, strict=True)]
    anomalous = sum(bool(record.get("is_anomalous")) for record in records)
    page = render("detect_report.html", title=f"dualvad detect: {len(records)} videos, {anomalous} anomalous",
                  models=models, threshold=f"{threshold:g}", videos=videos)
    return Path(write_atomic(path, page.encode("utf-8")))


def _report_video(record: dict[str, Any], name: str) -> ReportVideo:
    """The record with its timeline drawn (a scored one) and its highest clip, if that has an explanation."""
    if "error" in record:
        return ReportVideo(name, record)
    vlm, scorer, verdict = detection_results(record)
    best = max(record["clips"], key=lambda clip: clip["score"]) if record["clips"] else None
    return ReportVideo(name, record, timeline_png(vlm, "VLM", [("scorer", scorer), ("verdict", verdict)]),
                       best if best and best["explanation"] else None)


def detection_results(record: dict[str, Any]) -> tuple[VideoResult, VideoResult, VideoResult]:
    """A detection record as the evaluation report's :class:`VideoResult` values, label ``unlabelled``:
    (the VLM's: segment scores, sampled frames with their P(Yes), video score; the scorer's: its segment
    scores and video score; the verdict's: its segment scores and the answer's video score)."""
    video, segments, frames = record["video"], record["segments"], record["frames"]
    bounds = np.array([[s["start_frame"], s["end_frame"]] for s in segments], dtype=np.int64).reshape(-1, 2)

    def column(key: str) -> np.ndarray:
        return np.array([s[key] for s in segments], dtype=np.float32)

    common = (record["video_path"], UNLABELLED, int(video["frames"]), float(video["fps"]), [], bounds)
    vlm = VideoResult(*common, column("vlm_score"), float(record["vlm_score"]),
                      np.array([f["index"] for f in frames], dtype=np.int64),
                      np.array([f["p_yes"] for f in frames], dtype=np.float32))
    return (vlm, VideoResult(*common, column("scorer_score"), float(record["scorer_score"])),
            VideoResult(*common, column("score"), float(record["video_score"])))
