"""The run directory: where every stage reads its input and writes its output.

A run is a local path or any pyarrow filesystem URI (``s3://bucket/run``, ``gs://...``).
Writes are atomic: a file is written under a temporary name and renamed into place, so a
crashed stage never leaves a half-written table that the next stage would read.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq

TEMP_PREFIX = ".tmp-"


@dataclass(frozen=True)
class RunDir:
    """A run directory on a pyarrow filesystem."""

    fs: pafs.FileSystem
    root: str  # path inside ``fs``, no trailing slash
    uri: str  # what the user gave, made absolute for local paths

    def path(self, *parts: str) -> str:
        """Path of ``parts`` under the run, in ``fs``'s path syntax."""
        return "/".join([self.root, *parts])

    def sub(self, *parts: str) -> RunDir:
        """The folder ``parts`` under the run as a run directory of its own (same filesystem)."""
        return RunDir(self.fs, self.path(*parts), "/".join([self.uri.rstrip("/"), *parts]))

    def exists(self, *parts: str) -> bool:
        return self.fs.get_file_info(self.path(*parts)).type != pafs.FileType.NotFound

    def makedirs(self, *parts: str) -> str:
        target = self.path(*parts)
        self.fs.create_dir(target, recursive=True)
        return target

    def parquet_files(self, *parts: str) -> list[str]:
        """Data files of a table directory, sorted; ``_``- and ``.``-prefixed files are not data."""
        selector = pafs.FileSelector(self.path(*parts), allow_not_found=True)
        return sorted(
            info.path
            for info in self.fs.get_file_info(selector)
            if info.type == pafs.FileType.File
            and info.base_name.endswith(".parquet")
            and not info.base_name.startswith(("_", "."))
        )

    def read_table(self, *parts: str, columns: list[str] | None = None) -> pa.Table | None:
        """All data files of a table directory as one table, or ``None`` when there are none."""
        files = self.parquet_files(*parts)
        if not files:
            return None
        return pads.dataset(files, filesystem=self.fs, format="parquet").to_table(columns=columns)

    def write_table(self, table: pa.Table, *parts: str) -> str:
        """Write ``table`` as Parquet at ``parts`` atomically (temporary name, then rename)."""
        target = self.path(*parts)
        self.fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
        temp = f"{target.rsplit('/', 1)[0]}/{TEMP_PREFIX}{uuid.uuid4().hex}.parquet"
        pq.write_table(table, temp, filesystem=self.fs)
        self.fs.move(temp, target)
        return target

    def publish_dir(self, local_dir: str, *parts: str) -> str:
        """Copy local folder ``local_dir`` to ``parts`` under the run atomically: into a temporary
        folder first, then renamed into place, replacing what was there."""
        target = self.path(*parts)
        temp = f"{target.rsplit('/', 1)[0]}/{TEMP_PREFIX}{uuid.uuid4().hex}"
        self.fs.create_dir(temp, recursive=True)
        pafs.copy_files(local_dir, temp, source_filesystem=pafs.LocalFileSystem(),
                        destination_filesystem=self.fs)
        if self.exists(*parts):
            self.fs.delete_dir(target)
        self.fs.move(temp, target)
        return target

    def write_text(self, text: str, *parts: str) -> str:
        """Write a small text file (JSON, Markdown) atomically."""
        return self.write_bytes(text.encode(), *parts)

    def write_bytes(self, data: bytes, *parts: str) -> str:
        """Write a small file (a PNG, an HTML page) atomically: temporary name, then rename."""
        target = self.path(*parts)
        self.fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
        temp = f"{target.rsplit('/', 1)[0]}/{TEMP_PREFIX}{uuid.uuid4().hex}"
        with self.fs.open_output_stream(temp) as stream:
            stream.write(data)
        self.fs.move(temp, target)
        return target


def open_run(uri: str) -> RunDir:
    """Resolve a run directory (local path or filesystem URI); local paths become absolute."""
    if "://" not in uri:
        uri = os.path.abspath(uri)
        return RunDir(pafs.LocalFileSystem(), uri.rstrip("/") or "/", uri)
    fs, root = pafs.FileSystem.from_uri(uri)
    return RunDir(fs, root.rstrip("/"), uri)
