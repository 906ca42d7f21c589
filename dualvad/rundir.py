"""The run directory: where every stage reads its input and writes its output.

A run is a local path or any pyarrow filesystem URI (``s3://bucket/run``, ``gs://...``).
Writes are atomic (:func:`dualvad.files.write_atomic`): on a local disk a file is written under a
temporary name and renamed into place; on object storage, where one PUT of an object is atomic already
and a rename is a copy plus a delete, the file is written in place. Either way a crashed stage never
leaves a half-written table that the next stage would read.

Folders are another matter: object storage has no folder rename (pyarrow's ``S3FileSystem.move``
refuses a folder: it is a prefix of many objects). :meth:`RunDir.move_dir` renames on a local disk and
elsewhere copies file by file, writing a *marker* file last (a stage output's ``_stage.json``) and
deleting the source marker first, so a folder that holds the marker is complete.

S3-compatible stores (MinIO, moto, Ceph) are reached through pyarrow's usual settings:
``AWS_ENDPOINT_URL`` (read by pyarrow >= 15), ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``,
``AWS_DEFAULT_REGION`` (docs/cluster.md). Ray workers read the run too: they need the same environment
(set before Ray starts, or passed with ``ray job submit --runtime-env-json``).
"""

from __future__ import annotations

import os
import tempfile
import uuid
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from dualvad.files import TEMP_PREFIX, write_atomic
from dualvad.storage import resolve


@dataclass(frozen=True)
class RunDir:
    """A run directory on a pyarrow filesystem."""

    fs: pafs.FileSystem
    root: str  # path inside ``fs``, no trailing slash
    uri: str  # what the user gave, made absolute for local paths

    @property
    def local(self) -> bool:
        """True on a local disk (renames are atomic there), False on object storage."""
        return isinstance(self.fs, pafs.LocalFileSystem)

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
        return self.read_files(self.parquet_files(*parts), columns=columns)

    def read_files(self, files: list[str], columns: list[str] | None = None) -> pa.Table | None:
        """Parquet ``files`` (paths in ``fs``) as one table, or ``None`` when ``files`` is empty."""
        if not files:
            return None
        return pads.dataset(files, filesystem=self.fs, format="parquet").to_table(columns=columns)

    def write_table(self, table: pa.Table, *parts: str) -> str:
        """Write ``table`` as Parquet at ``parts`` atomically (temporary name, then rename)."""
        return write_atomic(self.path(*parts), lambda path: pq.write_table(table, path, filesystem=self.fs),
                            self.fs)

    def publish_dir(self, local_dir: str, *parts: str, marker: str | None = None) -> str:
        """Copy local folder ``local_dir`` to ``parts`` under the run atomically: into a temporary
        folder first, then renamed into place, replacing what was there. On object storage the move is a
        copy (:meth:`move_dir`): ``marker``, the file a reader checks for, is copied last."""
        target = self.path(*parts)
        temp = f"{target.rsplit('/', 1)[0]}/{TEMP_PREFIX}{uuid.uuid4().hex}"
        self.fs.create_dir(temp, recursive=True)
        pafs.copy_files(local_dir, temp, source_filesystem=pafs.LocalFileSystem(),
                        destination_filesystem=self.fs)
        if self.exists(*parts):
            self.fs.delete_dir(target)
        self.move_dir(temp, target, marker=marker)
        return target

    def move_dir(self, source: str, target: str, marker: str | None = None) -> None:
        """Move folder ``source`` to ``target`` (paths in ``fs``; ``target`` must not exist).

        A rename on a local disk. On object storage, which cannot rename a folder, a copy of every file
        followed by deleting ``source``: the file named ``marker`` (a base name, e.g. ``_stage.json``) is
        copied last and deleted from ``source`` first, so that a folder holding it is whole. A copy
        interrupted half-way leaves ``target`` without the marker and ``source`` intact.
        """
        if self.local:
            self.fs.move(source, target)
            return
        selector = pafs.FileSelector(source, recursive=True)
        files = [i.path for i in self.fs.get_file_info(selector) if i.type == pafs.FileType.File]
        files.sort(key=lambda path: (marker is not None and path == f"{source}/{marker}", path))
        for path in files:
            self.fs.copy_file(path, target + path[len(source):])
        if marker is not None and f"{source}/{marker}" in files:
            self.fs.delete_file(f"{source}/{marker}")
        self.fs.delete_dir(source)

    def read_text(self, *parts: str) -> str:
        """A small text file's content (JSON, Markdown); ``FileNotFoundError`` names it when absent."""
        with self.fs.open_input_stream(self.path(*parts)) as stream:
            return stream.read().decode()

    def write_text(self, text: str, *parts: str) -> str:
        """Write a small text file (JSON, Markdown) atomically."""
        return self.write_bytes(text.encode(), *parts)

    def write_bytes(self, data: bytes, *parts: str) -> str:
        """Write a small file (a PNG, an HTML page) atomically: temporary name, then rename."""
        return write_atomic(self.path(*parts), data, self.fs)


# URI -> (the temporary folder, owned for this process's life; the local folder to read)
_FETCHED: dict[str, tuple[tempfile.TemporaryDirectory, str]] = {}


def local_folder(fs: pafs.FileSystem, path: str, into: str) -> str:
    """A folder that file readers (``from_pretrained``, ``TrainedScorer.load``) can open: ``path`` itself on
    a local disk, else the folder ``path`` of ``fs`` copied into the local folder ``into`` (the caller's to
    delete: a model fully loaded into memory no longer needs it)."""
    if isinstance(fs, pafs.LocalFileSystem):
        return path
    pafs.copy_files(path, into, source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())
    return into


def fetched_folder(location: str) -> str:
    """:func:`local_folder` of a location string, copied once per process: ``location`` itself when it is a
    local path or a hub id, else (a pyarrow URI) a local copy deleted at the process's exit. For a Ray
    worker loading a model from the run on object storage."""
    if "://" not in location:
        return location
    if location not in _FETCHED:
        fs, inner = resolve(location)
        if isinstance(fs, pafs.LocalFileSystem):  # file:// names a local folder: nothing to copy
            return inner
        copy = tempfile.TemporaryDirectory(prefix="dualvad-fetched-")
        _FETCHED[location] = (copy, local_folder(fs, inner, copy.name))
    return _FETCHED[location][1]


def open_run(uri: str) -> RunDir:
    """Resolve a run directory (local path or filesystem URI); local paths become absolute."""
    if "://" not in uri:
        uri = os.path.abspath(uri)
        return RunDir(pafs.LocalFileSystem(), uri.rstrip("/") or "/", uri)
    fs, root = resolve(uri)
    return RunDir(fs, root.rstrip("/"), uri)
