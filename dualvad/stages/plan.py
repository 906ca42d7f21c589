"""``--dry-run``: what :func:`dualvad.stages.runner.run_stage` would do, from the records alone."""

from __future__ import annotations

import contextlib
import contextvars
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from dualvad import paths
from dualvad import schema as S
from dualvad.rundir import RunDir
from dualvad.stages.records import as_recorded, stage_state
from dualvad.stages.registry import Stage
from dualvad.stages.settings import settings_by_key

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
    state = stage_state(stage, run, settings, external)
    inputs, fingerprint, record = state.inputs, state.fingerprint, state.record
    keys = settings_by_key(settings, effective)
    if state.done(force):
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
    now = settings_by_key(as_recorded(settings), effective, like=settings)
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


def dry_running() -> bool:
    """Inside :func:`dry_run`."""
    return _DRY_RUN.get()
