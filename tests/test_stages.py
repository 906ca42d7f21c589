"""The stage runner on toy stages (no Ray): skip, redo, force, lock, staging, publishing, failures, signals,
and inputs that are corrupt or hold duplicates."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dualvad import paths
from dualvad import schema as S
from dualvad.errors import MissingInputError
from dualvad.rundir import open_run
from dualvad.stages import (
    CorruptInputError,
    FailureShareError,
    RunBusyError,
    Skipped,
    Stage,
    StageContext,
    StageInterrupted,
    StagesConfig,
    read_input,
    read_record,
    run_stage,
)

SEGMENTS = Stage("ingest", paths.SEGMENTS)
SCORES = Stage("score", paths.SCORES, inputs=(paths.SEGMENTS,))


class Work:
    """A stage's work that writes one table (``rows`` ints) and counts its calls."""

    def __init__(self, rows: int = 3, fail: Exception | None = None) -> None:
        self.rows, self.fail, self.calls, self.resumed = rows, fail, 0, []

    def __call__(self, context: StageContext) -> str:
        self.calls += 1
        self.resumed.append(context.resumed)
        context.out.write_table(pa.table({"x": list(range(self.rows))}), "part-0.parquet")
        if self.fail is not None:
            raise self.fail
        return f"wrote {self.rows} rows"


def table_of(run, output: str) -> list[int]:
    return run.read_table(output).column("x").to_pylist()


def test_a_finished_stage_is_skipped_and_other_settings_or_force_redo_it(tmp_path):
    run, config = open_run(str(tmp_path / "run")), StagesConfig()
    work = Work()
    assert run_stage(SEGMENTS, run, {"k": 8}, work, config) == "wrote 3 rows"
    skipped = run_stage(SEGMENTS, run, {"k": 8}, work, config)
    assert isinstance(skipped, Skipped) and work.calls == 1
    assert "already done" in str(skipped) and skipped.summary == "wrote 3 rows"
    # a setting that changes the result redoes the stage (today's K=16 after K=8 kept K=8)
    assert run_stage(SEGMENTS, run, {"k": 16}, Work(rows=5), config) == "wrote 5 rows"
    assert table_of(run, paths.SEGMENTS) == [0, 1, 2, 3, 4]
    forced = Work(rows=2)
    run_stage(SEGMENTS, run, {"k": 16}, forced, config, force=True)
    assert forced.calls == 1 and table_of(run, paths.SEGMENTS) == [0, 1]
    record = read_record(run, paths.SEGMENTS)
    assert record["settings"] == {"k": 16} and record["stage"] == "ingest"
    assert not list(Path(run.path(paths.WORK_DIR)).iterdir())  # staging published, nothing left behind


def test_an_upstream_change_reaches_the_later_stage(tmp_path):
    run, config = open_run(str(tmp_path / "run")), StagesConfig()
    run_stage(SEGMENTS, run, {"k": 8}, Work(), config)
    later = Work()
    run_stage(SCORES, run, {}, later, config)
    assert isinstance(run_stage(SCORES, run, {}, later, config), Skipped)
    run_stage(SEGMENTS, run, {"k": 4}, Work(), config)  # re-ingested: the scores are stale
    run_stage(SCORES, run, {}, later, config)
    assert later.calls == 2
    assert read_record(run, paths.SCORES)["inputs"] == {
        paths.SEGMENTS: read_record(run, paths.SEGMENTS)["fingerprint"]}


def test_a_missing_input_names_the_stage_to_run(tmp_path):
    run = open_run(str(tmp_path / "run"))
    with pytest.raises(MissingInputError, match=r"segments does not exist: run `dualvad ingest` first"):
        run_stage(SCORES, run, {}, Work(), StagesConfig())
    (tmp_path / "run" / "segments").mkdir()  # written by something else than the runner
    older = r"older dualvad: run `dualvad ingest` first \(with --force\)"
    with pytest.raises(MissingInputError, match=older):
        run_stage(SCORES, run, {}, Work(), StagesConfig())


def test_a_failed_run_keeps_the_earlier_output_and_the_next_run_resumes(tmp_path):
    run, config = open_run(str(tmp_path / "run")), StagesConfig()
    run_stage(SEGMENTS, run, {"k": 8}, Work(rows=3), config)
    broken = Work(rows=7, fail=RuntimeError("worker died"))
    with pytest.raises(RuntimeError, match="worker died"):
        run_stage(SEGMENTS, run, {"k": 16}, broken, config)
    assert table_of(run, paths.SEGMENTS) == [0, 1, 2]  # nothing deleted before its replacement is done
    assert read_record(run, paths.SEGMENTS)["settings"] == {"k": 8}
    again = Work(rows=7)
    run_stage(SEGMENTS, run, {"k": 16}, again, config)
    assert broken.resumed == [False] and again.resumed == [True]  # the staged work was found
    assert table_of(run, paths.SEGMENTS) == list(range(7))


def test_too_many_failures_publish_nothing(tmp_path):
    run, config = open_run(str(tmp_path / "run")), StagesConfig(max_failure_share=0.25)

    def two_of_four_fail(context: StageContext) -> str:
        context.videos = 4
        context.record_failures([{S.VIDEO_ID: f"v{i}", S.VIDEO_PATH: f"/v{i}.mp4", S.REASON: f"v{i}: broken"}
                                 for i in range(2)])
        return "done"

    with pytest.raises(FailureShareError, match=r"2 of 4 videos failed.*max_failure_share=0.25.*v0: broken"):
        run_stage(SEGMENTS, run, {}, two_of_four_fail, config)
    assert not run.exists(paths.SEGMENTS)
    assert run_stage(SEGMENTS, run, {}, two_of_four_fail, StagesConfig(max_failure_share=0.5)) == "done"
    failures = pq.read_table(run.path(paths.SEGMENTS, paths.FAILURES_FILE))
    assert failures.schema.equals(S.FAILURES_SCHEMA) and failures.num_rows == 2


def test_sigterm_ends_the_stage_with_its_work_staged(tmp_path):
    run, config = open_run(str(tmp_path / "run")), StagesConfig()
    run_stage(SEGMENTS, run, {"k": 8}, Work(rows=3), config)

    def terminated(context: StageContext) -> str:
        context.out.write_table(pa.table({"x": [9]}), "part-0.parquet")
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the signal interrupts this
        return "not reached"

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(StageInterrupted, match="SIGTERM") as raised:
        run_stage(SEGMENTS, run, {"k": 16}, terminated, config)
    assert raised.value.signum == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is before  # the stage's handler ends with the stage
    assert table_of(run, paths.SEGMENTS) == [0, 1, 2]
    (staged,) = Path(run.path(paths.WORK_DIR)).iterdir()
    assert pq.read_table(staged / "part-0.parquet").column("x").to_pylist() == [9]


_HOLD_LOCK = """
import sys, time
from dualvad.rundir import open_run
from dualvad.stages import RunLock
with RunLock(open_run(sys.argv[1]), "sample"):
    print("locked", flush=True)
    time.sleep(60)
"""


def test_a_second_process_on_the_run_refuses_with_the_holder(tmp_path):
    run = open_run(str(tmp_path / "run"))
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, run.uri], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        work = Work()
        with pytest.raises(RunBusyError, match=rf"in use by `dualvad sample` \(pid {holder.pid} on "):
            run_stage(SEGMENTS, run, {}, work, StagesConfig())
        assert work.calls == 0 and not run.exists(paths.SEGMENTS)
    finally:
        holder.kill()
        holder.wait(timeout=30)
    # a killed holder leaves no stale lock (flock dies with its process)
    assert run_stage(SEGMENTS, run, {}, Work(), StagesConfig()) == "wrote 3 rows"


def test_corrupt_or_duplicated_input_rows_are_one_line_naming_file_and_writer(tmp_path):
    run = open_run(str(tmp_path / "run"))
    segments = pa.table({S.VIDEO_ID: ["a", "a", "b"], S.SEGMENT_INDEX: pa.array([0, 1, 0], pa.int32())})
    run.write_table(segments, paths.SEGMENTS, "part-a.parquet")
    key = (S.VIDEO_ID, S.SEGMENT_INDEX)
    assert read_input(run, paths.SEGMENTS, unique=key).num_rows == 3
    run.write_table(segments, paths.SEGMENTS, "part-b.parquet")  # a second writer wrote the same videos
    twice = r"holds 3 keys more than once .*re-run `dualvad ingest --force`"
    with pytest.raises(CorruptInputError, match=twice):
        read_input(run, paths.SEGMENTS, unique=key)
    part = Path(run.path(paths.SEGMENTS, "part-b.parquet"))
    part.write_bytes(part.read_bytes()[:40])  # truncated
    with pytest.raises(CorruptInputError) as raised:
        read_input(run, paths.SEGMENTS, unique=key)
    message = str(raised.value)
    assert "\n" not in message and str(part) in message and "`dualvad ingest`" in message


def test_a_corrupt_stage_record_names_itself(tmp_path):
    run = open_run(str(tmp_path / "run"))
    run.write_text("{not json", paths.SEGMENTS, paths.STAGE_FILE)
    with pytest.raises(CorruptInputError, match=r"segments/_stage.json cannot be read"):
        run_stage(SCORES, run, {}, Work(), StagesConfig())
