"""Export the benchmarks as InternVL-style JSONL, with the frames as JPEG files.

Writes, under the output folder::

    images/<video id>/<frame>.jpg                       every frame once (shared by both benchmarks)
    image_<split>.jsonl, video_<split>.jsonl            {"id", "image": [paths], "conversations"}
    README.md                                           the dataset card
    dataset_info.json                                   LLaMA-Factory's registry of the JSONL files
    internvl_meta_<split>.json                          InternVL's meta file of each split's JSONL files

Image paths are relative to the output folder, as InternVL's meta ``root`` and LLaMA-Factory's
``media_dir`` expect (:mod:`dualvad.benchmarks.cards`). The folder is a local path or a pyarrow URI
(``s3://bucket/export``), written file by file atomically.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import pyarrow.parquet as pq

from dualvad import paths
from dualvad import schema as S
from dualvad.benchmarks import cards
from dualvad.errors import MissingInputError
from dualvad.rundir import RunDir, open_run

_UNSAFE = re.compile(r"[^A-Za-z0-9._/-]")


@dataclass(frozen=True)
class ExportSummary:
    files: dict[str, int]  # jsonl file -> lines
    images: int
    output: str

    def __str__(self) -> str:
        counts = ", ".join(f"{name}: {lines}" for name, lines in sorted(self.files.items()))
        return f"export-jsonl: {counts}; {self.images} frames -> {self.output}"


def frame_path(video_id: str, frame: int) -> str:
    """Relative path of a frame's JPEG (video ids keep their folders; odd characters become _)."""
    return f"images/{_UNSAFE.sub('_', video_id)}/{frame:06d}.jpg"


def export_jsonl(run: RunDir, out_dir: str) -> ExportSummary:
    """Write the JSONL files and frames of ``RUN/benchmarks`` into ``out_dir`` (a local path or a URI)."""
    out = open_run(str(out_dir))
    lines: dict[str, list[str]] = {}
    written: set[str] = set()
    for kind in paths.BENCHMARK_KINDS:
        files = run.parquet_files(paths.BENCHMARKS, kind)
        if not files:
            raise MissingInputError(f"{run.path(paths.BENCHMARKS, kind)} holds no shards: "
                                    "run `dualvad build-benchmarks` first")
        for path in files:
            for row in pq.read_table(path, filesystem=run.fs).to_pylist():
                images = _save_frames(out, row, kind, written)
                record = {"id": row[S.ROW_ID], "image": images, "conversations": row[S.CONVERSATIONS]}
                lines.setdefault(f"{kind}_{row[S.SPLIT]}.jsonl", []).append(json.dumps(record))
    for name, content in lines.items():
        out.write_text("\n".join(content) + "\n", name)
    files = {name: len(content) for name, content in lines.items()}
    _write_descriptions(run, out, files, len(written))
    return ExportSummary(files, len(written), out.uri)


def _write_descriptions(run: RunDir, out: RunDir, files: dict[str, int], images: int) -> None:
    """The dataset card, LLaMA-Factory's ``dataset_info.json`` and one InternVL meta file per split."""
    manifest = json.loads(run.read_text(paths.BENCHMARKS, paths.MANIFEST_FILE))
    out.write_text(str(cards.dataset_card(manifest, files, images)), paths.CARD_FILE)
    out.write_text(json.dumps(cards.llamafactory_dataset_info(files), indent=2),
                   paths.LLAMAFACTORY_DATASET_INFO)
    for split in sorted({cards.file_split(name) for name in files}):
        meta = cards.internvl_meta(files, out.uri, split)
        out.write_text(json.dumps(meta, indent=2), paths.INTERNVL_META.format(split=split))


def _save_frames(out: RunDir, row: dict, kind: str, written: set[str]) -> list[str]:
    if kind == "image":
        pairs = [(row["frame_index"], row["image"])]
    else:
        pairs = list(zip(row["frame_indices"], row["images"], strict=True))
    paths = []
    for frame, jpeg in pairs:
        relative = frame_path(row[S.VIDEO_ID], frame)
        if relative not in written:
            out.write_bytes(jpeg, relative)
            written.add(relative)
        paths.append(relative)
    return paths
