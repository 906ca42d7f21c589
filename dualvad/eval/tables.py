"""The result tables as Markdown (``results.md``), CSV (``results.csv``, ``results_categories.csv``) and
HTML (the report): one row per evaluated model (:data:`COLUMNS`), and one row per model and anomaly
category (:data:`CATEGORY_COLUMNS`, the category's videos plus all normal ones).

A column list is its table's one definition: each format is written from it and from the
:class:`~dualvad.eval.results.ModelResult` values, never from another format's text.
"""

from __future__ import annotations

import csv
import html
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from dualvad.eval.results import ModelResult

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


def html_table(rows: Sequence[Any], columns: Sequence[Column] = COLUMNS, cls: str = "metrics") -> str:
    """The same rows as an HTML ``<table class="metrics">`` (``cls``): text escaped, numeric cells and
    headers ``class="num"``, each column's ``key`` as its header's ``data-key``."""
    def num(column: Column) -> str:
        return ' class="num"' if column.numeric else ""

    def cell(column: Column, item: Any) -> str:
        return f"<td{num(column)}>{html.escape(display(column.value(item)))}</td>"

    head = "".join(f'<th{num(column)} data-key="{column.key}">{html.escape(column.title)}</th>'
                   for column in columns)
    body = "".join("<tr>" + "".join(cell(column, item) for column in columns) + "</tr>" for item in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
