"""The stage runner: what every stage needs, done once (DESIGN.md, Stages).

A stage is declared (:class:`Stage`: its name, its output folder, the earlier outputs it reads) and
its work is a function of a :class:`StageContext`. :func:`run_stage` then:

1. **locks** the run directory (``RUN/.lock``), so a second process refuses with a message naming the
   first instead of writing the same rows twice;
2. computes the **fingerprint**: a hash of the stage, the settings that change its result and the
   fingerprints of its inputs (each input's ``_stage.json``), so a change anywhere upstream reaches
   every later stage;
3. **skips** the stage when its output carries that fingerprint (``force`` redoes it);
4. runs the work in a **staging folder** ``RUN/.work/<output>-<fingerprint>``: an interrupted run
   (SIGTERM, Ctrl-C, a crash) leaves its finished work there, and the next run with the same
   fingerprint resumes from it;
5. records per-video **failures** (``_failures.parquet``) and fails past
   ``stages.max_failure_share`` without publishing;
6. **publishes** the staging folder as ``RUN/<output>`` with ``_stage.json`` (fingerprint, inputs,
   settings, summary) and ``config.yaml`` (the whole effective config, headed by the keys the
   fingerprint covers): the earlier output is replaced only once the new one is complete, and a
   publish that fails half-way (or a process killed there) puts the earlier output back.

Inside :func:`dry_run` the runner does none of this: :func:`run_stage` returns a :class:`Plan` (inputs,
fingerprint, skip or run and why, staged work) without locking or writing anything.

No Ray here: stages that use Ray call it from inside their work function.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import datetime
import hashlib
import json
import logging
import os
import signal
import socket
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import yaml

from dualvad import __version__, paths
from dualvad import schema as S
from dualvad.checks import above, at_least, at_most
from dualvad.errors import MissingInputError, StageError
from dualvad.rundir import RunDir

log = logging.getLogger(__name__)

RECORD_VERSION = 1  # bumped when _stage.json changes meaning
REMOTE_LOCK_STALE_S = 6 * 3600  # a lock file on object storage older than this is taken over
REPLACED = ".replaced-"  # RUN/.work/<output>.replaced-<token>: an earlier output while its successor moves in


@dataclass
class StagesConfig:
    """What the runner does for every stage."""

    max_failure_share: float = 0.25  # a per-video stage fails when more videos than this share fail
    flush_videos: int = 16  # per-video stages write their finished rows at least every this many videos
    # ... or this many seconds, whichever comes first (not ingest: its workers write whole groups of at most
    # flush_videos videos, the same groups when Ray runs a task again)
    flush_seconds: float = 10.0

    def __post_init__(self) -> None:
        at_least(self, 0, "max_failure_share")
        at_most(self, 1, "max_failure_share")
        at_least(self, 1, "flush_videos")
        above(self, 0, "flush_seconds")


class RunBusyError(StageError):
    """Another process holds the run directory's lock."""


class CorruptInputError(StageError):
    """An input file cannot be read, or holds rows twice; the message names the file and its writer."""


class FailureShareError(StageError):
    """More videos failed than ``stages.max_failure_share`` allows; nothing was published."""


class StageInterrupted(BaseException):  # noqa: N818 - like KeyboardInterrupt, not an Exception
    """SIGTERM or SIGINT arrived while a stage ran; its finished work is kept for the next run."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum


@dataclass(frozen=True)
class Stage:
    """A stage's declaration: ``name`` (its CLI command), ``output`` (a :mod:`dualvad.paths` folder) and
    ``inputs`` (the outputs of earlier stages in the same run that it reads)."""

    name: str
    output: str
    inputs: tuple[str, ...] = ()


@dataclass
class StageContext:
    """What a stage's work function gets: the run, the staging folder it writes its output into
    (``out``, published as ``RUN/<output>``), a scratch folder deleted after publishing (``scratch``,
    e.g. Ray Train's checkpoints) and whether ``out`` holds work of an interrupted earlier run."""

    stage: Stage
    run: RunDir
    out: RunDir
    scratch: RunDir
    settings: StagesConfig
    resumed: bool
    failures: list[dict[str, Any]] = field(default_factory=list)  # FAILURES_SCHEMA rows
    videos: int | None = None  # per-video stages: videos the stage was given (for the failure share)

    def staged_video_ids(self, files: list[str] | None = None) -> set[str]:
        """Videos whose rows an interrupted earlier run of this stage already wrote into ``out``: in
        ``files`` (its data files as listed by the caller) or, by default, in every data file there."""
        files = self.out.parquet_files() if files is None else files
        table = self.out.read_files(files, columns=[S.VIDEO_ID])
        return set(table.column(S.VIDEO_ID).unique().to_pylist()) if table is not None else set()

    def record_failures(self, rows: list[dict[str, Any]]) -> None:
        """Add per-video failures (``video_id``, ``video_path``, ``reason``)."""
        self.failures += rows


@dataclass(frozen=True)
class Skipped:
    """A stage the runner did not run: its output already carries the fingerprint of these inputs and
    settings."""

    stage: str
    output: str
    fingerprint: str
    finished: str  # when the output was written, ISO 8601 UTC
    summary: str  # what that run printed

    def __str__(self) -> str:
        return (f"{self.stage}: already done with these inputs and settings (finished {self.finished}, "
                f"fingerprint {self.fingerprint}); --force redoes it -> {self.output}")


def run_stage(stage: Stage, run: RunDir, settings: dict[str, Any], work: Callable[[StageContext], Any],
              config: StagesConfig, force: bool = False, external: dict[str, str] | None = None,
              effective: Any = None) -> Any:
    """Run ``work`` as ``stage`` on ``run`` (see the module docstring); returns its summary, or
    :class:`Skipped`, or inside :func:`dry_run` the :class:`Plan` (nothing run, locked or written).

    Args:
        settings: the settings that change the stage's result (JSON-serialisable); :func:`section` builds
            them from a config section, so ``config.yaml`` can name their keys.
        external: identities of inputs from outside the run (the corpus, another run's model).
        effective: the whole config the stage was called with (a dataclass), written as
            ``RUN/<output>/config.yaml``; without it that file holds ``settings`` alone.

    Raises:
        RunBusyError: another process is running a stage on ``run``.
        MissingInputError, CorruptInputError: an input is absent, unreadable or holds duplicates.
        FailureShareError: too many videos failed; the work so far stays staged for a re-run.
        StageInterrupted: SIGTERM / SIGINT; the work so far stays staged for a re-run.
    """
    if _DRY_RUN.get():
        return plan_stage(stage, run, settings, force, external, effective)
    with RunLock(run, stage.name):
        _restore_replaced(run)
        inputs = {name: input_fingerprint(run, name) for name in stage.inputs} | (external or {})
        fingerprint = _fingerprint(stage, settings, inputs)
        record = read_record(run, stage.output)
        if not force and record is not None and record.get("fingerprint") == fingerprint:
            return Skipped(stage.name, run.path(stage.output), fingerprint, record["finished"],
                           record.get("summary", ""))
        context = _context(stage, run, fingerprint, config, force)
        started = time.time()
        try:
            with _signals_raise_interrupted():
                summary = work(context)
        except StageInterrupted:
            log.warning("%s: interrupted; the finished work is kept in %s and the same command continues "
                        "from it", stage.name, context.out.path())
            raise
        _finish(context, summary, settings, inputs, fingerprint, started, effective)
        return summary


# ---------------------------------------------------------------------------------------------- dry run

_DRY_RUN: contextvars.ContextVar[bool] = contextvars.ContextVar("dualvad_dry_run", default=False)


@contextlib.contextmanager
def dry_run() -> Iterator[None]:
    """Inside this block :func:`run_stage` only plans: it returns a :class:`Plan` and runs, locks and
    writes nothing. A context, not a parameter, so every stage function gets it without passing it on."""
    token = _DRY_RUN.set(True)
    try:
        yield
    finally:
        _DRY_RUN.reset(token)


@dataclass(frozen=True)
class Plan:
    """What :func:`run_stage` would do (``dualvad STAGE --dry-run``)."""

    stage: str
    output: str  # RUN/<output>
    fingerprint: str
    inputs: dict[str, str]  # input -> fingerprint (earlier outputs, then external inputs)
    settings: dict[str, Any]  # the settings the fingerprint covers, by config key
    skip: bool  # the output is up to date: the stage would skip
    reason: str  # why it would run, or when the up-to-date output was finished
    staged: str | None  # staging folder the work goes into (None when skipping)
    resumes: bool  # that folder holds an interrupted run's work, which the run would keep
    staged_videos: int | None  # videos with rows in it (per-video stages)

    def __str__(self) -> str:
        verdict = f"up to date, would skip ({self.reason})" if self.skip else f"would run: {self.reason}"
        inputs = ", ".join(f"{name} {value}" for name, value in self.inputs.items()) or "none"
        settings = ", ".join(f"{key}={value}" for key, value in self.settings.items()) or "none"
        lines = [f"{self.stage} --dry-run: {verdict}", f"  output       {self.output}",
                 f"  inputs       {inputs}", f"  fingerprint  {self.fingerprint}, of the inputs and settings",
                 textwrap.fill(settings, 110, initial_indent="  settings     ", subsequent_indent=" " * 15,
                               break_long_words=False, break_on_hyphens=False),
                 f"  work         {self._work()}", "nothing was run or written"]
        return "\n".join(lines)

    def _work(self) -> str:
        if self.skip:
            return "none (--force redoes it)"
        if not self.resumes:
            return f"all of it, in {self.staged}"
        kept = f"{self.staged_videos} videos" if self.staged_videos is not None else "the work"
        return f"the rest: {kept} already done in {self.staged} (an interrupted run) are kept"


def plan_stage(stage: Stage, run: RunDir, settings: dict[str, Any], force: bool = False,
               external: dict[str, str] | None = None, effective: Any = None) -> Plan:
    """What :func:`run_stage` would do, from the records alone (no lock, nothing written).

    Raises:
        MissingInputError, CorruptInputError: as :func:`run_stage` would.
    """
    inputs = {name: input_fingerprint(run, name) for name in stage.inputs} | (external or {})
    fingerprint = _fingerprint(stage, settings, inputs)
    record = read_record(run, stage.output)
    keys = settings_by_key(settings, effective)
    if not force and record is not None and record.get("fingerprint") == fingerprint:
        return Plan(stage.name, run.path(stage.output), fingerprint, inputs, keys, True,
                    f"finished {record.get('finished')}", None, False, None)
    staged = run.sub(paths.WORK_DIR, f"{stage.output}-{fingerprint}")
    resumes = not force and staged.exists()  # --force discards the staged work
    return Plan(stage.name, run.path(stage.output), fingerprint, inputs, keys, False,
                _why(run, stage, record, settings, inputs, force, effective), staged.path(), resumes,
                _staged_videos(staged) if resumes else None)


def _why(run: RunDir, stage: Stage, record: dict[str, Any] | None, settings: dict[str, Any],
         inputs: dict[str, str], force: bool, effective: Any) -> str:
    """Why the stage would run: no output, --force, or what changed since the output was written."""
    if record is None:
        return ("its output was written by an older dualvad (no record)" if run.exists(stage.output)
                else "no output yet")
    if force:
        return "--force"
    before = settings_by_key(record.get("settings", {}), effective, like=settings)
    now = settings_by_key(_as_recorded(settings), effective, like=settings)
    changes = [f"{key} {before.get(key, '(unset)')} -> {now.get(key, '(unset)')}"
               for key in sorted(before.keys() | now.keys()) if before.get(key) != now.get(key)]
    old_inputs = record.get("inputs", {})
    changes += [f"input {name} changed" for name in sorted(old_inputs.keys() | inputs.keys())
                if old_inputs.get(name) != inputs.get(name)]
    return "; ".join(changes) or "the stage's record is of another dualvad version"


def _staged_videos(staged: RunDir) -> int | None:
    """Videos with rows in a staging folder; ``None`` when its tables have no video column."""
    try:
        table = staged.read_table(columns=[S.VIDEO_ID])
    except (OSError, pa.ArrowException):  # no video_id column (not a per-video stage) or unreadable
        return None
    return len(table.column(S.VIDEO_ID).unique()) if table is not None else None


def _as_recorded(settings: dict[str, Any]) -> Any:
    """``settings`` as ``_stage.json`` holds them (tuples become lists ...), to compare with a record."""
    return json.loads(json.dumps(settings, default=str))


def input_fingerprint(run: RunDir, output: str) -> str:
    """The fingerprint recorded in ``RUN/<output>/_stage.json``.

    Raises:
        MissingInputError: the output does not exist, or was written without the runner.
    """
    record = read_record(run, output)
    if record is None:
        writer = paths.WRITER.get(output, output)
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
    writer = paths.WRITER.get(output, output)
    return f"{path} cannot be read ({first_line}); it is written by `dualvad {writer}`: re-run it, --force"


def _check_unique(table: pa.Table, keys: tuple[str, ...], where: str, output: str) -> None:
    counts = table.group_by(list(keys)).aggregate([([], "count_all")])
    repeated = counts.filter(pc.greater(counts["count_all"], 1))
    if repeated.num_rows:
        first = {key: repeated[key][0].as_py() for key in keys}
        raise CorruptInputError(
            f"{where} holds {repeated.num_rows} keys more than once (e.g. {first}): it was written twice; "
            f"re-run `dualvad {paths.WRITER.get(output, output)} --force`")


# ------------------------------------------------------------------------------------------------- lock


class RunLock:
    """An exclusive lock on a run directory while a stage runs.

    Local runs: ``flock`` on ``RUN/.lock`` (released by the kernel when the process dies, so a killed
    stage never leaves the run locked). Object storage has no lock primitive: the lock is a file holding
    its owner, taken over after ``REMOTE_LOCK_STALE_S``; two processes starting within the same
    moment could both take it (best effort).
    """

    def __init__(self, run: RunDir, stage: str) -> None:
        self.run, self.stage = run, stage
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        self.run.makedirs()
        owner = json.dumps({"stage": self.stage, "pid": os.getpid(), "host": socket.gethostname(),
                            "since": _now()})
        if isinstance(self.run.fs, pafs.LocalFileSystem):
            self._lock_local(owner)
        else:
            self._lock_remote(owner)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            import fcntl

            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
        else:
            with contextlib.suppress(FileNotFoundError):  # already gone: nothing to release
                self.run.fs.delete_file(self.run.path(paths.LOCK_FILE))

    def _lock_local(self, owner: str) -> None:
        import fcntl

        fd = os.open(self.run.path(paths.LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace")
            os.close(fd)
            raise self._busy(holder) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, owner.encode(), 0)
        self._fd = fd

    def _lock_remote(self, owner: str) -> None:
        path = self.run.path(paths.LOCK_FILE)
        info = self.run.fs.get_file_info(path)
        if info.type == pafs.FileType.File and info.mtime is not None:
            age = time.time() - info.mtime.timestamp()
            if age < REMOTE_LOCK_STALE_S:
                with self.run.fs.open_input_stream(path) as stream:
                    raise self._busy(stream.read().decode(errors="replace"))
        self.run.write_text(owner, paths.LOCK_FILE)

    def _busy(self, holder: str) -> RunBusyError:
        try:
            who = json.loads(holder)
            text = f"`dualvad {who['stage']}` (pid {who['pid']} on {who['host']}, since {who['since']})"
        except (ValueError, KeyError, TypeError):
            text = "another process"
        return RunBusyError(f"{self.run.uri} is in use by {text}; wait for it to finish, or use another "
                            "run directory")


# ------------------------------------------------------------------------------------------- internals


def _fingerprint(stage: Stage, settings: dict[str, Any], inputs: dict[str, str]) -> str:
    canonical = json.dumps({"stage": stage.name, "settings": settings, "inputs": inputs, "v": RECORD_VERSION},
                           sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _context(stage: Stage, run: RunDir, fingerprint: str, config: StagesConfig, force: bool) -> StageContext:
    """The staging and scratch folders of this fingerprint; stale ones of the same stage are removed."""
    name = f"{stage.output}-{fingerprint}"
    out, scratch = run.sub(paths.WORK_DIR, name), run.sub(paths.WORK_DIR, f"{name}.scratch")
    for info in run.fs.get_file_info(pafs.FileSelector(run.path(paths.WORK_DIR), allow_not_found=True)):
        mine = info.base_name in (name, f"{name}.scratch")
        if info.base_name.startswith(f"{stage.output}-") and (force or not mine):
            run.fs.delete_dir(info.path)
    resumed = out.exists()
    out.makedirs()
    if resumed:
        log.info("%s: resuming the interrupted run in %s", stage.name, out.path())
    return StageContext(stage, run, out, scratch, config, resumed)


def _finish(context: StageContext, summary: Any, settings: dict[str, Any], inputs: dict[str, str],
            fingerprint: str, started: float, effective: Any) -> None:
    """Check the failure share, write the failures, the record and the config into the staging folder,
    publish it."""
    if context.videos is not None:
        failures = pa.Table.from_pylist(context.failures, schema=S.FAILURES_SCHEMA)
        context.out.write_table(failures, paths.FAILURES_FILE)
        _check_failure_share(context)
    record = {"version": RECORD_VERSION, "stage": context.stage.name, "fingerprint": fingerprint,
              "inputs": inputs, "settings": settings, "started": _iso(started), "finished": _now(),
              "summary": str(summary), "videos": context.videos, "failures": len(context.failures)}
    context.out.write_text(json.dumps(record, indent=2, sort_keys=True, default=str), paths.STAGE_FILE)
    context.out.write_text(config_text(record, settings, effective), paths.CONFIG_FILE)
    _publish(context)


def config_text(record: dict[str, Any], settings: dict[str, Any], effective: Any) -> str:
    """``config.yaml`` of a stage output: the whole effective config (loadable with ``--config``), headed
    by comments naming the stage, its fingerprint and the keys that fingerprint covers."""
    stage, covered = record["stage"], settings_by_key(settings, effective)
    values = dataclasses.asdict(effective) if dataclasses.is_dataclass(effective) else settings
    inputs = ", ".join(record["inputs"]) or "none"
    header = [f"The effective config `dualvad {stage}` ran with (dualvad {__version__}, finished "
              f"{record['finished']}); `--config` this file to run it again with the same settings.",
              f"Its fingerprint {record['fingerprint']} covers its inputs ({inputs}) and these keys, so "
              f"changing any of them redoes the stage: {', '.join(covered) or 'none'}. "
              "The other keys did not change this output."]
    comments = "".join(textwrap.fill(line, 108, initial_indent="# ", subsequent_indent="# ",
                                     break_long_words=False, break_on_hyphens=False) + "\n"
                       for line in header)
    return comments + yaml.safe_dump(_as_recorded(values), sort_keys=False)


def _check_failure_share(context: StageContext) -> None:
    failed, total, limit = len(context.failures), context.videos or 0, context.settings.max_failure_share
    if failed == 0 or failed <= limit * total:
        return
    reasons = "; ".join(row[S.REASON] for row in context.failures[:3])
    raise FailureShareError(
        f"{context.stage.name}: {failed} of {total} videos failed (more than stages.max_failure_share="
        f"{limit}); first reasons: {reasons}. All failures are listed in "
        f"{context.out.path(paths.FAILURES_FILE)}; nothing was published. Fix or remove those videos, or "
        "raise stages.max_failure_share, and re-run: finished videos are kept.")


def _publish(context: StageContext) -> None:
    """``out`` becomes ``RUN/<output>``; the earlier output is moved aside first and deleted after. Should
    the move into place fail, the earlier output goes back; a process killed between the two moves
    leaves it in ``RUN/.work/<output>.replaced-*``, which the next stage on the run puts back
    (:func:`_restore_replaced`).

    On object storage each move is a copy and a delete (:meth:`RunDir.move_dir`) with ``_stage.json``
    copied last: an output is published once its ``_stage.json`` is there, and a stage reading it
    (:func:`input_fingerprint`) never sees one half-copied."""
    run, output = context.run, context.stage.output
    replaced = None
    if run.exists(output):
        replaced = run.path(paths.WORK_DIR, f"{output}{REPLACED}{uuid.uuid4().hex[:8]}")
        run.move_dir(run.path(output), replaced, marker=paths.STAGE_FILE)
    try:
        run.move_dir(context.out.path(), run.path(output), marker=paths.STAGE_FILE)
    except BaseException:
        if replaced is not None and not _published(run, output):
            _drop_partial(run, output)
            run.move_dir(replaced, run.path(output), marker=paths.STAGE_FILE)
        raise
    if replaced is not None:
        run.fs.delete_dir(replaced)
    if context.scratch.exists():
        run.fs.delete_dir(context.scratch.path())


def _published(run: RunDir, output: str) -> bool:
    """``RUN/<output>`` is whole: renamed into place (local disk) or copied up to its marker (object
    storage, where a half-copied folder has no ``_stage.json``)."""
    return run.exists(output) if run.local else run.exists(output, paths.STAGE_FILE)


def _drop_partial(run: RunDir, output: str) -> None:
    """Delete what a copy that did not finish left at ``RUN/<output>`` (object storage only)."""
    if run.exists(output):
        run.fs.delete_dir(run.path(output))


def _restore_replaced(run: RunDir) -> None:
    """Put back an earlier output that a killed publish left moved aside (``RUN/<output>`` missing or,
    on object storage, half-copied); one whose replacement was published is deleted, as the publish
    would have."""
    selector = pafs.FileSelector(run.path(paths.WORK_DIR), allow_not_found=True)
    for info in sorted(run.fs.get_file_info(selector), key=lambda i: i.path):
        output, marker, _ = info.base_name.partition(REPLACED)
        if not marker or info.type != pafs.FileType.Directory:
            continue
        if _published(run, output):
            run.fs.delete_dir(info.path)
        else:
            log.warning("%s: putting back %s, moved aside by a publish that did not finish",
                        run.path(output), info.path)
            _drop_partial(run, output)
            run.move_dir(info.path, run.path(output), marker=paths.STAGE_FILE)


_INTERRUPT_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_T = TypeVar("_T")
_active_interrupt: Callable[[int, object], None] | None = None  # while a stage runs in the main thread


@contextlib.contextmanager
def _signals_raise_interrupted() -> Iterator[None]:
    """SIGTERM and SIGINT raise :class:`StageInterrupted` in the main thread while the stage runs, so
    its ``finally`` blocks write what is finished; elsewhere (a worker thread) signals are left alone.

    The handler's exception lands wherever the main thread is, and some places drop it (an exception
    raised in a finaliser is printed and ignored, a library may catch everything): a stage whose work
    then returns normally still raises :class:`StageInterrupted` here, before anything is published."""
    global _active_interrupt
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def interrupt(signum: int, _frame: object) -> None:
        received.append(signum)
        raise StageInterrupted(signum)

    previous = {sig: signal.signal(sig, interrupt) for sig in _INTERRUPT_SIGNALS}
    _active_interrupt = interrupt
    try:
        yield
    finally:
        _active_interrupt = None
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if received:
        raise StageInterrupted(received[0])


def wait_interruptibly(call: Callable[[], _T], poll_s: float = 0.2) -> _T:
    """``call()``, run in a helper thread while the main thread waits on it, so that a SIGTERM / SIGINT
    interrupts the stage at once (:class:`StageInterrupted`; the helper thread is left to end with the
    process).

    For calls that block in ``ray.get``, such as Ray Train's ``fit()``: Ray runs no Python signal handler
    while ``ray.get`` waits, so in the main thread the signal would be noticed only once training ended. Off
    the main thread (nothing to interrupt there) ``call`` runs directly.

    Raises:
        StageInterrupted: a signal arrived while waiting.
        BaseException: whatever ``call`` raised.
    """
    if threading.current_thread() is not threading.main_thread():
        return call()
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as error:  # noqa: BLE001 - handed to the waiting main thread, raised there
            outcome["error"] = error

    helper = threading.Thread(target=run, name="stage-work", daemon=True)
    helper.start()
    while helper.is_alive():
        helper.join(poll_s)  # returns to Python between waits: the signal handler runs here
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def reclaim_signals() -> None:
    """Put the running stage's SIGTERM / SIGINT handlers back; call it after starting a library that
    installs its own (``ray.init`` does: its handler would end the process without writing anything)."""
    if _active_interrupt is not None and threading.current_thread() is threading.main_thread():
        for sig in _INTERRUPT_SIGNALS:
            signal.signal(sig, _active_interrupt)


class Section(dict):
    """A config section's settings as :func:`section` returns them: a plain dict (hashed and recorded as
    one) that remembers the section's type, so that the runner can name its keys (``sample.budget``)."""

    def __init__(self, values: dict[str, Any], of: type) -> None:
        super().__init__(values)
        self.of = of


def section(config: Any, *leave_out: str) -> Section:
    """A config section as a dict, without the fields that do not change a stage's result (workers,
    threads ...)."""
    values = dataclasses.asdict(config)
    for name in leave_out:
        values.pop(name)
    return Section(values, type(config))


def settings_by_key(settings: dict[str, Any], effective: Any = None,
                    like: dict[str, Any] | None = None) -> dict[str, Any]:
    """``settings`` flattened to dotted keys: a :class:`Section`'s keys are named under the field of the
    config ``effective`` that holds its type (``sample.budget``), nested dicts under their key, other keys
    keep their own name. ``like``: the settings whose sections name the keys (default ``settings``; a
    record read back holds plain dicts)."""
    names = _section_names(effective)
    like = settings if like is None else like
    prefix = names.get(like.of) if isinstance(like, Section) else None
    flat: dict[str, Any] = {}
    for key, value in settings.items():
        inner = like.get(key)
        label = names.get(inner.of, key) if isinstance(inner, Section) else key
        _flatten(label if prefix is None else f"{prefix}.{label}", value, flat)
    return flat


def _section_names(effective: Any) -> dict[type, str]:
    """Section type -> its key in the top-level config (each section type appears once there)."""
    if not dataclasses.is_dataclass(effective):
        return {}
    return {type(getattr(effective, f.name)): f.name for f in dataclasses.fields(effective)
            if dataclasses.is_dataclass(getattr(effective, f.name))}


def _flatten(label: str, value: Any, flat: dict[str, Any]) -> None:
    if isinstance(value, dict) and value:
        for key, inner in value.items():
            _flatten(f"{label}.{key}", inner, flat)
    else:
        flat[label] = value


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _iso(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).isoformat(timespec="seconds")
