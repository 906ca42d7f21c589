"""What the runner records about each output (``RUN/<output>/_stage.json``) and how later stages read
earlier outputs: a record, its fingerprint, an input table, with errors that name the file and the stage
that writes it."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dualvad import paths
from dualvad.errors import MissingInputError, StageError
from dualvad.rundir import RunDir
from dualvad.stages.registry import Stage, writer_of

RECORD_VERSION = 1  # bumped when _stage.json changes meaning


class CorruptInputError(StageError):
    """An input file cannot be read, or holds rows twice; the message names the file and its writer."""


def stage_fingerprint(stage: Stage, settings: dict[str, Any], inputs: dict[str, str]) -> str:
    """The hash of a stage's name, its settings and its inputs' fingerprints: 16 hex digits."""
    canonical = json.dumps({"stage": stage.name, "settings": settings, "inputs": inputs, "v": RECORD_VERSION},
                           sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class StageState:
    """Where a stage stands on a run: its inputs' fingerprints (earlier outputs, then external inputs),
    the fingerprint of this run of it, and its output's record (``None``: never published)."""

    inputs: dict[str, str]
    fingerprint: str
    record: dict[str, Any] | None

    def done(self, force: bool) -> bool:
        """The output already carries this fingerprint, and ``force`` does not ask to redo it."""
        return not force and self.record is not None and self.record.get("fingerprint") == self.fingerprint


def stage_state(stage: Stage, run: RunDir, settings: dict[str, Any],
                external: dict[str, str] | None = None) -> StageState:
    """What :func:`dualvad.stages.runner.run_stage` and its dry run decide from.

    Raises:
        MissingInputError: an input has not been published (see :func:`input_fingerprint`).
    """
    inputs = {name: input_fingerprint(run, name) for name in stage.inputs} | (external or {})
    return StageState(inputs, stage_fingerprint(stage, settings, inputs), read_record(run, stage.output))


def input_fingerprint(run: RunDir, output: str) -> str:
    """The fingerprint recorded in ``RUN/<output>/_stage.json``.

    Raises:
        MissingInputError: the output does not exist, or was written without the runner.
    """
    record = read_record(run, output)
    if record is None:
        writer = writer_of(output)
        detail = "was written by an older dualvad" if run.exists(output) else "does not exist"
        raise MissingInputError(f"{run.path(output)} {detail}: run `dualvad {writer}` first"
                                + (" (with --force)" if run.exists(output) else ""))
    return str(record["fingerprint"])


def read_record(run: RunDir, output: str) -> dict[str, Any] | None:
    """The runner's record of ``RUN/<output>`` (``None`` when there is none)."""
    if not run.exists(output, paths.STAGE_FILE):
        return None
    try:
        with run.fs.open_input_stream(run.path(output, paths.STAGE_FILE)) as stream:
            return json.loads(stream.read())
    except (OSError, ValueError) as error:
        raise CorruptInputError(corrupt_message(run.path(output, paths.STAGE_FILE), output, error)) from error


def read_input(run: RunDir, output: str, *parts: str, columns: list[str] | None = None,
               unique: tuple[str, ...] = ()) -> pa.Table | None:
    """The Parquet table of an earlier stage's output (``RUN/<output>/<parts>``), ``None`` when it holds
    no data file.

    Args:
        unique: key columns no two rows may share (e.g. video and segment).

    Raises:
        CorruptInputError: a file cannot be read, or two rows share the ``unique`` key; the message names
            the file and the stage that writes it.
    """
    tables = []
    for path in run.parquet_files(output, *parts):
        try:
            tables.append(pq.read_table(path, filesystem=run.fs, columns=columns))
        except (OSError, pa.ArrowException) as error:
            raise CorruptInputError(corrupt_message(path, output, error)) from error
    if not tables:
        return None
    table = pa.concat_tables(tables, promote_options="permissive")
    if unique:
        _check_unique(table, unique, run.path(output, *parts), output)
    return table


def corrupt_message(path: str, output: str, error: BaseException) -> str:
    """One line: ``path`` cannot be read (the error's first line), and which stage to re-run."""
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    writer = writer_of(output)
    return f"{path} cannot be read ({first_line}); it is written by `dualvad {writer}`: re-run it, --force"


def _check_unique(table: pa.Table, keys: tuple[str, ...], where: str, output: str) -> None:
    counts = table.group_by(list(keys)).aggregate([([], "count_all")])
    repeated = counts.filter(pc.greater(counts["count_all"], 1))
    if repeated.num_rows:
        first = {key: repeated[key][0].as_py() for key in keys}
        raise CorruptInputError(
            f"{where} holds {repeated.num_rows} keys more than once (e.g. {first}): it was written twice; "
            f"re-run `dualvad {writer_of(output)} --force`")


def as_recorded(settings: dict[str, Any]) -> Any:
    """``settings`` as ``_stage.json`` holds them (tuples become lists ...), to compare with a record."""
    return json.loads(json.dumps(settings, default=str))


