"""The result tables as Markdown (``results.md``), CSV (``results.csv``, ``results_categories.csv``) and
HTML (the report): one row per evaluated model (:data:`COLUMNS`), and one row per model and anomaly
category (:data:`CATEGORY_COLUMNS`, the category's videos plus all normal ones). The report's own tables
are here as rows for its template: the decisions at the serving threshold (:func:`threshold_rows`) and
every test video (:func:`video_rows`).

A column list is its table's one definition: each format is written from it and from the
:class:`~dualvad.eval.results.ModelResult` values, never from another format's text.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Mapping, Sequence, Set
from dataclasses import dataclass
from typing import Any

from dualvad.eval.metrics import ThresholdCounts, at_threshold, auc_or_none, auc_text, frame_ground_truth
from dualvad.eval.results import ModelResult, VideoResult, video_level
from dualvad.pages import macro

Value = str | int | float | None


@dataclass(frozen=True)
class Column:
    """One table column: ``key`` heads the CSV, ``title`` the Markdown and HTML tables, ``value`` reads
    the cell from a row (a :class:`ModelResult` or a :class:`CategoryRow`; ``None`` = the metric is
    undefined or the row does not report it)."""

    key: str
    title: str
    value: Callable[[Any], Value]
    numeric: bool = True


def _metric(key: str) -> Callable[[Any], Value]:
    return lambda row: row.metrics.get(key)


@dataclass(frozen=True)
class CategoryRow:
    """One model's metrics over one anomaly category's videos plus all normal test videos."""

    model: str
    category: str
    videos: int  # the category's videos and the normal ones
    anomalous: int  # the category's videos
    metrics: dict[str, float | None]


def category_rows(models: Sequence[ModelResult]) -> list[CategoryRow]:
    """Each model's categories in order (sorted by category), from ``ModelResult.categories``."""
    rows = []
    for model in models:
        for category, metrics in model.categories.items():
            subset = model.category_videos(category)
            rows.append(CategoryRow(model.name, category, len(subset),
                                    sum(v.label == category for v in subset), metrics))
    return rows


#: The table's columns, in order: the model, its number of videos, then the metrics.
COLUMNS: tuple[Column, ...] = (
    Column("model", "Model", lambda model: model.name, numeric=False),
    Column("videos", "Videos", lambda model: len(model.videos)),
    Column("video_auc", "Video AUC", _metric("video_auc")),
    Column("frame_auc", "Frame AUC", _metric("frame_auc")),
    Column("frame_auc_vera", "Frame AUC (VERA)", _metric("frame_auc_vera")),
    Column("frame_auc_16", "Frame AUC (16-frame)", _metric("frame_auc_16")),
    Column("frame_ap", "Frame AP", _metric("frame_ap")),
)

#: The per-category table's columns: the model, the category, its videos, then the model's metrics.
CATEGORY_COLUMNS: tuple[Column, ...] = (
    Column("model", "Model", lambda row: row.model, numeric=False),
    Column("category", "Category", lambda row: row.category, numeric=False),
    Column("videos", "Videos", lambda row: row.videos),
    Column("anomalous", "Of the category", lambda row: row.anomalous),
    *COLUMNS[2:],
)


def display(value: Value) -> str:
    """A cell as people read it (Markdown, HTML): floats to 4 decimals, ``None`` as ``n/a``."""
    if value is None:
        return "n/a"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def machine(value: Value) -> str:
    """A cell as programs read it (CSV): floats at full precision, ``None`` as an empty cell."""
    if value is None:
        return ""
    return repr(float(value)) if isinstance(value, float) else str(value)


def markdown_table(rows: Sequence[Any], columns: Sequence[Column] = COLUMNS) -> str:
    """A GFM pipe table ``| Model | Videos | Video AUC | ... |`` (models by default, or
    :func:`category_rows` with :data:`CATEGORY_COLUMNS`), numbers right-aligned; a ``|`` in a name is
    escaped so it cannot split the row."""
    def row(cells: Sequence[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    lines = [row([column.title for column in columns]),
             "|" + "|".join("---:" if column.numeric else "---" for column in columns) + "|"]
    lines += [row([display(column.value(item)) for column in columns]) for item in rows]
    return "\n".join(lines) + "\n"


def csv_table(rows: Sequence[Any], columns: Sequence[Column] = COLUMNS) -> str:
    """The same rows as CSV, headed by the column keys (``model,videos,video_auc,...``)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([column.key for column in columns])
    for item in rows:
        writer.writerow([machine(column.value(item)) for column in columns])
    return buffer.getvalue()


def results_markdown(models: Sequence[ModelResult],
                     mismatches: dict[str, tuple[int, int]] | None = None) -> str:
    """``results.md``: the model table, the per-category table (when any model has categories) and the
    videos whose annotated frame count differs from the decoded one."""
    text = markdown_table(models)
    rows = category_rows(models)
    if rows:
        text += ("\nPer anomaly category (the category's videos plus all normal test videos):\n\n"
                 + markdown_table(rows, CATEGORY_COLUMNS))
    if mismatches:
        text += ("\nAnnotated frame counts that differ from the decoded ones (the VERA protocol uses the "
                 "annotated count):\n\n"
                 + "".join(f"- {video}: decoded {decoded}, annotated {annotated}\n"
                           for video, (decoded, annotated) in sorted(mismatches.items())))
    return text


@dataclass(frozen=True)
class Grid:
    """A table as a page shows it (``macros.html``'s ``data_table``): its columns, each row's cells as
    :func:`display` text (rows x columns), and the ``<table>``'s class."""

    columns: Sequence[Column]
    cells: list[list[str]]
    cls: str = "metrics"


def grid(rows: Sequence[Any], columns: Sequence[Column] = COLUMNS, cls: str = "metrics") -> Grid:
    """``rows`` (models, or :func:`category_rows`) as the cells of ``columns``."""
    return Grid(tuple(columns), [[display(column.value(item)) for column in columns] for item in rows], cls)


def html_table(rows: Sequence[Any], columns: Sequence[Column] = COLUMNS, cls: str = "metrics") -> str:
    """The same rows as an HTML ``<table class="metrics">`` (``cls``): text escaped, numeric cells and
    headers ``class="num"``, each column's ``key`` as its header's ``data-key``."""
    return str(macro("macros.html", "data_table", grid(rows, columns, cls)))


#: The report's metrics table's extra column: what a reader must know about a model first (results.md and
#: the CSV keep :data:`COLUMNS`).
NOTE_COLUMN = Column("note", "Note", lambda model: model.info.warning, numeric=False)


# ------------------------------------------------------------------- the report's decisions and videos


def threshold_counts(model: ModelResult, threshold: float) -> ThresholdCounts:
    """The model's video-level decisions ``video_score >= threshold`` against the videos' labels."""
    truth, scores = video_level(model)
    return at_threshold(truth, scores, threshold)


@dataclass(frozen=True)
class ThresholdRow:
    """One model's decisions at the serving threshold, as the report's threshold table and confusion
    table show them."""

    model: str
    videos: int
    counts: ThresholdCounts

    @property
    def called(self) -> int:
        """How many videos are called anomalous."""
        return self.counts.true_positives + self.counts.false_positives

    @property
    def precision(self) -> str:
        return _ratio(self.counts.precision, "no video called anomalous")

    @property
    def recall(self) -> str:
        return _ratio(self.counts.recall, "no anomalous video")

    @property
    def f1(self) -> str:
        return _ratio(self.counts.f1, "no video called or truly anomalous")


def _ratio(value: float | None, why: str) -> str:
    """``0.6667``, or ``undefined (why)`` where the ratio has a zero denominator."""
    return f"{value:.4f}" if value is not None else f"undefined ({why})"


def threshold_rows(models: Sequence[ModelResult], threshold: float) -> list[ThresholdRow]:
    """Each model's :func:`threshold_counts` at its own threshold where it has one (the verdict's row),
    else at ``threshold``, in order."""
    return [ThresholdRow(model.name, len(model.videos),
                         threshold_counts(model, decision_threshold(model, threshold))) for model in models]


def decision_threshold(model: ModelResult, serving: float) -> float:
    """The threshold a row's videos are called anomalous at: its own (the verdict's), else ``serving``."""
    return serving if model.threshold is None else model.threshold


def video_frame_auc(video: VideoResult) -> float | None:
    """AUC of one video's frame scores against its annotation; ``None`` where its frames hold one class (a
    normal video, or one annotated throughout)."""
    return auc_or_none(frame_ground_truth(video.num_frames, video.gt_intervals), video.frame_scores())


@dataclass(frozen=True)
class ScoreCell:
    """One model's video score of one video: ``0.700`` and whether it is at or above the threshold."""

    text: str
    called: bool


@dataclass(frozen=True)
class VideoRow:
    """One test video in the report's table of all videos; ``scores`` has one cell per model, ``None``
    where that model did not score the video (a recorded failure)."""

    video_id: str
    name: str  # its file-name-safe name: the anchor of its section and timeline
    label: str
    annotated: int  # annotated frames
    frames: int
    scores: list[ScoreCell | None]
    frame_auc: str  # the featured model's frame AUC on this video, as text
    drawn: bool  # whether its timeline is drawn (it has a section)


def video_rows(models: Sequence[ModelResult], featured: ModelResult, names: Mapping[str, str],
               drawn: Set[str], threshold: float) -> list[VideoRow]:
    """A row per video of ``names`` (video id -> safe name, in table order): its label and annotated frames
    as the first model that scored it states them, each model's video score, the featured model's frame
    AUC on it, and whether its timeline is in ``drawn``."""
    by_model = [{video.video_id: video for video in model.videos} for model in models]
    thresholds = [decision_threshold(model, threshold) for model in models]
    featured_videos = {video.video_id: video for video in featured.videos}
    rows = []
    for video_id, name in names.items():
        video = next(scored[video_id] for scored in by_model if video_id in scored)
        scores = [None if video_id not in scored else
                  ScoreCell(f"{scored[video_id].video_score:.3f}", scored[video_id].video_score >= cut)
                  for scored, cut in zip(by_model, thresholds, strict=True)]
        frame_auc = (auc_text(video_frame_auc(featured_videos[video_id])) if video_id in featured_videos
                     else "not scored")
        annotated = sum(end - start for start, end in video.gt_intervals)
        rows.append(VideoRow(video_id, name, video.label, annotated, video.num_frames, scores, frame_auc,
                             video_id in drawn))
    return rows
