"""Result tables shaped like the paper's: one row per evaluated model, as Markdown and CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

from dualvad.eval.results import ModelResult

#: (metric key, column title) in table order.
COLUMNS = (
    ("video_auc", "Video AUC"),
    ("frame_auc", "Frame AUC"),
    ("frame_auc_vera", "Frame AUC (VERA)"),
    ("frame_ap", "Frame AP"),
)


def _cell(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def markdown_table(models: Sequence[ModelResult], title: str = "Model") -> str:
    """A pipe table: ``| Model | Videos | Video AUC | ... |``, values to 4 decimals, ``n/a`` = undefined."""
    header = [title, "Videos", *(name for _, name in COLUMNS)]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    for model in models:
        cells = [model.name, str(len(model.videos)), *(_cell(model.metrics.get(key)) for key, _ in COLUMNS)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def csv_table(models: Sequence[ModelResult]) -> str:
    """The same rows as CSV with metric keys as headers; undefined metrics are empty cells."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["model", "videos", *(key for key, _ in COLUMNS)])
    for model in models:
        values = [model.metrics.get(key) for key, _ in COLUMNS]
        writer.writerow([model.name, len(model.videos), *("" if v is None else repr(v) for v in values)])
    return buffer.getvalue()
