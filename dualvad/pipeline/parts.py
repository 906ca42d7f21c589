"""Writing a stage's table as atomically renamed Parquet parts while a pipeline streams."""

from __future__ import annotations

import time
import uuid

import pyarrow as pa

from dualvad.rundir import RunDir

ROWS_PER_PART = 8192  # most rows per Parquet file (256 videos at K=32)


class PartWriter:
    """Buffers rows and writes ``<folder>/part-<token>-<n>.parquet`` into ``out``: every ``rows_per_part``
    rows, every ``flush_videos`` tables added or every ``flush_seconds``, whichever comes first, so an
    interrupted stage keeps nearly all it finished.

    Tables passed to :meth:`add` (one video's rows each) are never split across parts. Each part is
    renamed into place only once complete. As a context manager it flushes on exit, also on an error.
    """

    def __init__(self, out: RunDir, schema: pa.Schema, *folder: str, rows_per_part: int = ROWS_PER_PART,
                 flush_videos: int = 16, flush_seconds: float = 10.0) -> None:
        self.out, self.folder, self.schema = out, folder, schema
        self.rows_per_part, self.flush_videos, self.flush_seconds = rows_per_part, flush_videos, flush_seconds
        self.token = uuid.uuid4().hex[:8]
        self.buffer: list[pa.Table] = []
        self.buffered = self.rows_written = self.parts = 0
        self._last_flush = time.monotonic()

    def __enter__(self) -> PartWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.flush()

    def add(self, table: pa.Table) -> None:
        if table.num_rows:
            self.buffer.append(table)
            self.buffered += table.num_rows
        due = time.monotonic() - self._last_flush >= self.flush_seconds
        if self.buffered >= self.rows_per_part or len(self.buffer) >= self.flush_videos or due:
            self.flush()

    def flush(self) -> None:
        """Write what is buffered as one part (nothing when empty)."""
        self._last_flush = time.monotonic()
        if not self.buffer:
            return
        table = pa.concat_tables(self.buffer).cast(self.schema)
        self.out.write_table(table, *self.folder, f"part-{self.token}-{self.parts:05d}.parquet")
        self.rows_written += table.num_rows
        self.parts += 1
        self.buffer, self.buffered = [], 0
