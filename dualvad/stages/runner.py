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

import datetime
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs

from dualvad import paths
from dualvad import schema as S
from dualvad.errors import StageError
from dualvad.rundir import RunDir
from dualvad.runlock import RunLock
from dualvad.runpublish import publish, restore_replaced
from dualvad.stages.config import StagesConfig
from dualvad.stages.interrupts import StageInterrupted, raise_on_signals
from dualvad.stages.plan import dry_running, plan_stage
from dualvad.stages.records import RECORD_VERSION, stage_state
from dualvad.stages.registry import Stage
from dualvad.stages.settings import config_text

log = logging.getLogger(__name__)


class FailureShareError(StageError):
    """More videos failed than ``stages.max_failure_share`` allows; nothing was published."""


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
    if dry_running():
        return plan_stage(stage, run, settings, force, external, effective)
    with RunLock(run, stage.name):
        restore_replaced(run)
        state = stage_state(stage, run, settings, external)
        inputs, fingerprint, record = state.inputs, state.fingerprint, state.record
        if state.done(force):
            return Skipped(stage.name, run.path(stage.output), fingerprint, record["finished"],
                           record.get("summary", ""))
        context = _context(stage, run, fingerprint, config, force)
        started = time.time()
        try:
            with raise_on_signals():
                summary = work(context)
        except StageInterrupted:
            log.warning("%s: interrupted; the finished work is kept in %s and the same command continues "
                        "from it", stage.name, context.out.path())
            raise
        _finish(context, summary, settings, inputs, fingerprint, started, effective)
        return summary


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
    publish(run=context.run, output=context.stage.output, staged=context.out,
            scratch=context.scratch)


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


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _iso(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).isoformat(timespec="seconds")
