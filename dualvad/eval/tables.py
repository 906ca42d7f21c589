"""The result table, one row per evaluated model, as Markdown (``results.md``), CSV (``results.csv``)
and HTML (the report's metrics section).

:data:`COLUMNS` is the table's one definition: each format is written from it and from the
:class:`~dualvad.eval.results.ModelResult` values, never from another format's text.
"""

from __future__ import annotations

import csv
import html
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from dualvad.eval.results import ModelResult

Value = str | int | float | None


@dataclass(frozen=True)
class Column:
    """One table column: ``key`` heads the CSV, ``title`` the Markdown and HTML tables, ``value`` reads
    the cell from a model (``None`` = the metric is undefined or the model does not report it)."""

    key: str
    title: str
    value: Callable[[ModelResult], Value]
    numeric: bool = True


def _metric(key: str) -> Callable[[ModelResult], Value]:
    return lambda model: model.metrics.get(key)


#: The table's columns, in order: the model, its number of videos, then the metrics.
COLUMNS: tuple[Column, ...] = (
    Column("model", "Model", lambda model: model.name, numeric=False),
    Column("videos", "Videos", lambda model: len(model.videos)),
    Column("video_auc", "Video AUC", _metric("video_auc")),
    Column("frame_auc", "Frame AUC", _metric("frame_auc")),
    Column("frame_auc_vera", "Frame AUC (VERA)", _metric("frame_auc_vera")),
    Column("frame_ap", "Frame AP", _metric("frame_ap")),
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


def markdown_table(models: Sequence[ModelResult]) -> str:
    """A GFM pipe table ``| Model | Videos | Video AUC | ... |``, numbers right-aligned; a ``|`` in a
    model name is escaped so it cannot split the row."""
    def row(cells: Sequence[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    lines = [row([column.title for column in COLUMNS]),
             "|" + "|".join("---:" if column.numeric else "---" for column in COLUMNS) + "|"]
    lines += [row([display(column.value(model)) for column in COLUMNS]) for model in models]
    return "\n".join(lines) + "\n"


def csv_table(models: Sequence[ModelResult]) -> str:
    """The same rows as CSV, headed by the column keys (``model,videos,video_auc,...``)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([column.key for column in COLUMNS])
    for model in models:
        writer.writerow([machine(column.value(model)) for column in COLUMNS])
    return buffer.getvalue()


def html_table(models: Sequence[ModelResult]) -> str:
    """The same rows as an HTML ``<table class="metrics">``: text escaped, numeric cells and
    headers ``class="num"``, each column's ``key`` as its header's ``data-key``."""
    def num(column: Column) -> str:
        return ' class="num"' if column.numeric else ""

    def cell(column: Column, model: ModelResult) -> str:
        return f"<td{num(column)}>{html.escape(display(column.value(model)))}</td>"

    head = "".join(f'<th{num(column)} data-key="{column.key}">{html.escape(column.title)}</th>'
                   for column in COLUMNS)
    rows = "".join("<tr>" + "".join(cell(column, model) for column in COLUMNS) + "</tr>" for model in models)
    return f'<table class="metrics"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'
