"""Writing a stage's table as atomically renamed Parquet parts while a pipeline streams."""

from __future__ import annotations

import uuid

import pyarrow as pa

from dualvad.rundir import RunDir

ROWS_PER_PART = 8192  # rows per Parquet file (256 videos at K=32)


class PartWriter:
    """Buffers rows and writes ``RUN/<stage>/part-<token>-<n>.parquet`` every ROWS_PER_PART rows.

    Tables passed to :meth:`add` are never split across parts, so a video whose rows arrive
    in one table stays in one file. Each part is renamed into place only once complete.
    """

    def __init__(self, run: RunDir, stage: str, schema: pa.Schema, rows_per_part: int = ROWS_PER_PART):
        self.run, self.stage, self.schema, self.rows_per_part = run, stage, schema, rows_per_part
        self.token = uuid.uuid4().hex[:8]
        self.buffer: list[pa.Table] = []
        self.buffered = self.rows_written = self.parts = 0

    def add(self, table: pa.Table) -> None:
        if table.num_rows:
            self.buffer.append(table)
            self.buffered += table.num_rows
        if self.buffered >= self.rows_per_part:
            self.flush()

    def flush(self) -> None:
        """Write what is buffered as one part (nothing when empty)."""
        if not self.buffer:
            return
        table = pa.concat_tables(self.buffer).cast(self.schema)
        self.run.write_table(table, self.stage, f"part-{self.token}-{self.parts:05d}.parquet")
        self.rows_written += table.num_rows
        self.parts += 1
        self.buffer, self.buffered = [], 0
