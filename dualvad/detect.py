"""``dualvad detect``: a trained run's detector on new, unlabelled videos, with no Ray and no server.

Each video gets the endpoint's JSON (``POST /v1/detect``'s response less ``request_id`` and
``thumbnails``), one object per line, in the order given; a file that is not a usable video is a line with
its ``error`` instead, and the others are still scored. With a report path, :func:`write_detect_report`
also writes one self-contained HTML page of those records: a table of verdicts and one score timeline per
video (:func:`dualvad.eval.report.timeline_png`, as the evaluation report draws them).
"""

from __future__ import annotations

import html
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
from dualvad.detector import DetectOptions, Detector, InvalidVideoError
from dualvad.eval.report import img_tag, timeline_png
from dualvad.eval.results import VideoResult
from dualvad.files import safe_names, write_atomic
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
        models = {"run": detector.analyzer.run.uri, "vlm": detector.frame_judge.vlm_path}
        write_detect_report(report, records, models, options.threshold)
    failed = sum("error" in record for record in records)
    return DetectSummary(len(paths), failed, time.perf_counter() - started, out_name,
                         None if report is None else str(report))


# ---------------------------------------------------------------------------------------------- report

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 0.8em 0; }
th, td { border: 1px solid #bbb; padding: 0.25em 0.6em; text-align: left; }
th { background: #eee; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
img.timeline { width: 100%; max-width: 1000px; }
.anomalous { color: #b00; font-weight: bold; }
.error { color: #a33; }
.explanation { white-space: pre-wrap; background: #f6f6f6; padding: 0.6em; border-left: 3px solid #999; }
article.video { border-top: 1px solid #ccc; padding-top: 0.5em; }
"""


def write_detect_report(path: str | os.PathLike[str], records: Sequence[dict[str, Any]],
                        models: dict[str, str], threshold: float) -> Path:
    """One self-contained HTML page (inline CSS, PNGs as data URIs, no script) of ``dualvad detect``'s
    records: a table with each video's verdict, video score and category, then per video its score
    timeline (the VLM's segment scores with its sampled frames' P(Yes) as dots, the scorer's segment scores
    as a thin line) and the explanation of its highest-scoring clip; a failed video shows its error.

    Args:
        path: the HTML file (its folder is created; written atomically).
        records: :func:`detect_videos`' records, in order.
        models: ``{"run", "vlm"}``, named in the page's header.
        threshold: the video score at or above which a video is anomalous (named in the header).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = safe_names([record["video_path"] for record in records])
    rows = "".join(_summary_row(record, name) for record, name in zip(records, names, strict=True))
    sections = "".join(_video_section(record, name) for record, name in zip(records, names, strict=True))
    anomalous = sum(bool(record.get("is_anomalous")) for record in records)
    title = f"dualvad detect: {len(records)} videos, {anomalous} anomalous"
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}'
            f"</title><style>{_CSS}</style></head><body>\n<h1>{html.escape(title)}</h1>\n"
            f"<p>run {html.escape(models['run'])} &middot; VLM {html.escape(models['vlm'])} &middot; "
            f"anomalous when the video score is at least {threshold:g}</p>\n"
            "<table><tr><th>video</th><th>verdict</th><th>video score</th><th>category</th></tr>"
            f"{rows}</table>\n{sections}</body></html>\n")
    write_atomic(path, page.encode("utf-8"))
    return path


def _summary_row(record: dict[str, Any], name: str) -> str:
    link = f'<a href="#video-{name}">{html.escape(record["video_path"])}</a>'
    if "error" in record:
        return f'<tr><td>{link}</td><td class="error" colspan="3">not scored</td></tr>'
    verdict = '<span class="anomalous">anomalous</span>' if record["is_anomalous"] else "normal"
    return (f'<tr><td>{link}</td><td>{verdict}</td><td class="num">{record["video_score"]:.3f}</td>'
            f'<td>{html.escape(record["category"] or "")}</td></tr>')


def _video_section(record: dict[str, Any], name: str) -> str:
    heading = f'<article class="video" id="video-{name}"><h3>{html.escape(record["video_path"])}</h3>'
    if "error" in record:
        return f'{heading}<p class="error">{html.escape(record["error"])}</p></article>\n'
    vlm, scorer = detection_results(record)
    png = timeline_png(vlm, "VLM", [("scorer", scorer)])
    clips = record["clips"]
    best = max(clips, key=lambda clip: clip["score"]) if clips else None
    explanation = (f'<p>highest clip, {best["start_s"]:.2f} to {best["end_s"]:.2f} s, score '
                   f'{best["score"]:.1f}/10:</p><div class="explanation">{html.escape(best["explanation"])}'
                   "</div>" if best and best["explanation"] else "")
    return (f"{heading}<p>video score <b>{record['video_score']:.3f}</b>, "
            f"{'anomalous' if record['is_anomalous'] else 'normal'}</p>"
            + img_tag(png, "image/png", f"score timeline of {record['video_path']}", id_=f"timeline-{name}",
                   cls="timeline")
            + explanation + "</article>\n")


def detection_results(record: dict[str, Any]) -> tuple[VideoResult, VideoResult]:
    """A detection record as the evaluation report's :class:`VideoResult` values, label ``unlabelled``:
    (the VLM's: segment scores, sampled frames with their P(Yes), video score; the scorer's: its segment
    scores, its highest one as the video score)."""
    video, segments, frames = record["video"], record["segments"], record["frames"]
    bounds = np.array([[s["start_frame"], s["end_frame"]] for s in segments], dtype=np.int64).reshape(-1, 2)
    scorer_scores = np.array([s["scorer_score"] for s in segments], dtype=np.float32)
    common = (record["video_path"], UNLABELLED, int(video["frames"]), float(video["fps"]), [], bounds)
    vlm = VideoResult(*common, np.array([s["score"] for s in segments], dtype=np.float32),
                      float(record["video_score"]), np.array([f["index"] for f in frames], dtype=np.int64),
                      np.array([f["p_yes"] for f in frames], dtype=np.float32))
    return vlm, VideoResult(*common, scorer_scores, float(scorer_scores.max(initial=0.0)))
