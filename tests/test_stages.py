"""The stage runner on toy stages (no Ray): skip, redo, force, lock, staging, publishing, failures, signals,
inputs that are corrupt or hold duplicates, the config.yaml it publishes and its dry run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
import yaml

from dualvad import paths
from dualvad import schema as S
from dualvad.config import load_config
from dualvad.errors import MissingInputError
from dualvad.rundir import RunDir, open_run
from dualvad.runlock import RunBusyError
from dualvad.stages.config import StagesConfig
from dualvad.stages.interrupts import StageInterrupted, wait_interruptibly
from dualvad.stages.plan import Plan, dry_run
from dualvad.stages.records import CorruptInputError, read_input, read_record
from dualvad.stages.registry import Stage
from dualvad.stages.runner import FailureShareError, Skipped, StageContext, run_stage
from dualvad.stages.settings import section

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


def test_a_sigterm_interrupts_a_stage_blocked_in_ray_get(ray_session, tmp_path):
    """Ray's ``ray.get`` runs no Python signal handler until its object arrives, so a stage blocked in one
    (Ray Train's ``fit()``) would notice a SIGTERM only when the work ended. Through
    :func:`wait_interruptibly` the stage ends interrupted at once, here while the object it waits for can
    never arrive (a gate the test opens only afterwards)."""
    import asyncio

    ray = ray_session

    @ray.remote(num_cpus=0)
    class Gate:
        def __init__(self) -> None:
            self.opened = asyncio.Event()

        async def wait(self) -> str:
            await self.opened.wait()
            return "opened"

        def open(self) -> None:
            self.opened.set()

    gate = Gate.remote()
    waiting = gate.wait.remote()
    run = open_run(str(tmp_path / "run"))

    def blocked(context: StageContext) -> str:
        def signal_then_get() -> str:  # the signal is sent from the helper, once the main thread waits
            os.kill(os.getpid(), signal.SIGTERM)
            return ray.get(waiting)
        return wait_interruptibly(signal_then_get)

    try:
        with pytest.raises(StageInterrupted, match="SIGTERM"):
            run_stage(SEGMENTS, run, {"k": 8}, blocked, StagesConfig())
        assert ray.wait([waiting], timeout=0)[1] == [waiting]  # still waiting: the stage did not wait for it
        assert not run.exists(paths.SEGMENTS)
    finally:
        ray.get(gate.open.remote())
    assert ray.get(waiting) == "opened"


def test_wait_interruptibly_returns_the_value_or_raises_the_error_of_the_call():
    assert wait_interruptibly(lambda: 42) == 42
    with pytest.raises(ZeroDivisionError):
        wait_interruptibly(lambda: 1 / 0)


def test_a_sigterm_whose_exception_was_swallowed_still_ends_the_stage_unpublished(tmp_path):
    """The handler's exception can land in code that drops it (a finaliser, a library's broad except): the
    work then returns normally, and the stage must still end interrupted, its work staged, not published."""
    run, config = open_run(str(tmp_path / "run")), StagesConfig()

    def swallowing(context: StageContext) -> str:
        context.out.write_table(pa.table({"x": [9]}), "part-0.parquet")
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the signal interrupts this
        except BaseException:  # what a careless library does
            pass
        return "finished after the signal"

    with pytest.raises(StageInterrupted, match="SIGTERM"):
        run_stage(SEGMENTS, run, {"k": 8}, swallowing, config)
    assert not run.exists(paths.SEGMENTS)
    (staged,) = Path(run.path(paths.WORK_DIR)).iterdir()
    assert pq.read_table(staged / "part-0.parquet").column("x").to_pylist() == [9]


_HOLD_LOCK = """
import sys, time
from dualvad.rundir import open_run
from dualvad.runlock import RunLock
with RunLock(open_run(sys.argv[1]), "sample"):
    print("locked", flush=True)
    time.sleep(60)
"""


def test_a_second_process_on_the_run_refuses_with_the_holder(tmp_path):
    run = open_run(str(tmp_path / "run"))
    owner = Path(run.path(paths.LOCK_OWNER_FILE))
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, run.uri], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert json.loads(owner.read_text())["pid"] == holder.pid  # the holder's line, beside filelock's file
        work = Work()
        with pytest.raises(RunBusyError, match=rf"in use by `dualvad sample` \(pid {holder.pid} on "):
            run_stage(SEGMENTS, run, {}, work, StagesConfig())
        assert work.calls == 0 and not run.exists(paths.SEGMENTS)
    finally:
        holder.kill()
        holder.wait(timeout=30)
    # a killed holder leaves no stale lock (flock dies with its process), only its owner line, which the next
    # holder replaces and removes when it releases
    assert owner.is_file()
    assert run_stage(SEGMENTS, run, {}, Work(), StagesConfig()) == "wrote 3 rows"
    assert not owner.exists() and Path(run.path(paths.LOCK_FILE)).exists()


def test_a_lock_held_before_its_owner_line_is_written_names_another_process(tmp_path):
    """The moment between the holder's flock and its owner file: the refusal still comes, unnamed."""
    from filelock import UnixFileLock

    run = open_run(str(tmp_path / "run"))
    run.makedirs()
    held = UnixFileLock(run.path(paths.LOCK_FILE))
    with held, pytest.raises(RunBusyError, match="in use by another process"):
        run_stage(SEGMENTS, run, {}, Work(), StagesConfig())
    assert not run.exists(paths.LOCK_OWNER_FILE)


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


# ------------------------------------------------------------------------------ config.yaml and dry runs


def test_the_published_config_yaml_is_the_effective_config_headed_by_the_fingerprinted_keys(tmp_path):
    run = open_run(str(tmp_path / "run"))
    config = load_config(None, [f"run={run.uri}", "sample.budget=8", "scorer.epochs=3"])
    run_stage(SEGMENTS, run, section(config.sample, "seed"), Work(), config.stages, effective=config)
    written = Path(run.path(paths.SEGMENTS, paths.CONFIG_FILE))
    assert load_config(written) == config  # the whole config, loadable with --config
    header = " ".join(line[2:] for line in written.read_text().splitlines() if line.startswith("# "))
    fingerprint = read_record(run, paths.SEGMENTS)["fingerprint"]
    assert (f"Its fingerprint {fingerprint} covers its inputs (none) and these keys, so changing any of them "
            "redoes the stage: sample.strategy, sample.budget, sample.tau, sample.floor, sample.cdf_offset, "
            "sample.within_decode_window, sample.window_anchors. "
            "The other keys did not change this output.") in header
    # Without the whole config (a stage called with settings alone) the file holds those settings.
    run_stage(SCORES, run, {"k": 8}, Work(), StagesConfig())
    assert yaml.safe_load(Path(run.path(paths.SCORES, paths.CONFIG_FILE)).read_text()) == {"k": 8}


def _tree(root: Path) -> dict[str, int]:
    """Every file and folder under ``root`` with its modification time: what a dry run must not change."""
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")} if root.exists() else {}


class VideoWork(Work):
    """A per-video stage's work: rows with a video id (``rows`` videos), e.g. an interrupted ingest's."""

    def __call__(self, context: StageContext) -> str:
        self.calls += 1
        ids = [f"v{i}" for i in range(self.rows)]
        context.out.write_table(pa.table({S.VIDEO_ID: ids, "x": list(range(self.rows))}), "part-0.parquet")
        if self.fail is not None:
            raise self.fail
        return f"wrote {self.rows} videos"


def test_a_dry_run_says_what_would_run_and_why_and_runs_locks_and_writes_nothing(tmp_path):
    root, config = tmp_path / "run", StagesConfig()
    run = open_run(str(root))
    with dry_run():
        plan = run_stage(SEGMENTS, run, {"k": 8}, Work(), config)
    assert isinstance(plan, Plan) and not plan.skip and plan.reason == "no output yet"
    assert plan.inputs == {} and plan.settings == {"k": 8} and not plan.resumes
    assert not root.exists()  # not even the run directory or its lock
    run_stage(SEGMENTS, run, {"k": 8}, Work(), config)
    record = read_record(run, paths.SEGMENTS)
    interrupted = VideoWork(rows=3, fail=StageInterrupted(signal.SIGTERM))
    with pytest.raises(StageInterrupted):
        run_stage(SEGMENTS, run, {"k": 16}, interrupted, config)
    before, work = _tree(root), Work()
    with dry_run():
        same = run_stage(SEGMENTS, run, {"k": 8}, work, config)
        changed = run_stage(SEGMENTS, run, {"k": 16}, work, config)
        forced = run_stage(SEGMENTS, run, {"k": 16}, work, config, force=True)
        later = run_stage(SCORES, run, {}, work, config)
    assert work.calls == 0 and _tree(root) == before
    assert same.skip and same.fingerprint == record["fingerprint"]
    assert same.reason == f"finished {record['finished']}" and same.staged is None
    staged = run.path(paths.WORK_DIR, f"{paths.SEGMENTS}-{changed.fingerprint}")
    assert (changed.skip, changed.reason, changed.staged, changed.resumes, changed.staged_videos) == (
        False, "k 8 -> 16", staged, True, 3)
    assert str(changed).splitlines() == [
        "ingest --dry-run: would run: k 8 -> 16",
        f"  output       {run.path(paths.SEGMENTS)}",
        "  inputs       none",
        f"  fingerprint  {changed.fingerprint}, of the inputs and settings",
        "  settings     k=16",
        f"  work         the rest: 3 videos already done in {staged} (an interrupted run) are kept",
        "nothing was run or written"]
    assert (forced.reason, forced.resumes) == ("--force", False)  # --force discards the staged work
    assert later.inputs == {paths.SEGMENTS: record["fingerprint"]} and later.reason == "no output yet"
    run_stage(SCORES, run, {}, Work(), config)
    run_stage(SEGMENTS, run, {"k": 16}, VideoWork(rows=3), config)  # re-ingested: the scores are stale
    with dry_run():
        stale = run_stage(SCORES, run, {}, work, config)
        with pytest.raises(MissingInputError, match="segments does not exist"):
            run_stage(SCORES, open_run(str(tmp_path / "empty")), {}, work, config)
    assert stale.reason == "input segments changed" and not stale.skip


def _failing_publish_run(root: Path) -> RunDir:
    """A run on local files whose move of a staging folder into place fails (a full disk, a lost
    connection), through fsspec's local filesystem with that one move broken."""
    fsspec_local = pytest.importorskip("fsspec.implementations.local")

    class MoveIntoPlaceFails(fsspec_local.LocalFileSystem):
        def mv(self, path1, path2, **kwargs):
            source = Path(path1)
            if source.parent.name == paths.WORK_DIR and source.name.startswith(f"{paths.SEGMENTS}-"):
                raise OSError(f"cannot move {path1}: no space left on device")
            return super().mv(path1, path2, **kwargs)

    return RunDir(pafs.PyFileSystem(pafs.FSSpecHandler(MoveIntoPlaceFails())), str(root), str(root))


def _too_many_failures(context: StageContext) -> str:
    context.videos = 1
    context.record_failures([{S.VIDEO_ID: "v0", S.VIDEO_PATH: "/v0.mp4", S.REASON: "v0: broken"}])
    return "not published"


@pytest.mark.parametrize("failure", ["work raises", "too many videos fail", "interrupted", "publish fails"])
def test_a_failed_run_never_deletes_the_earlier_good_output(tmp_path, failure):
    # The case: a `sample` run rejected for its failures deleted the previous samples.
    root = tmp_path / "run"
    run_stage(SEGMENTS, open_run(str(root)), {"k": 8}, Work(rows=3), StagesConfig())
    run = open_run(str(root))
    if failure == "publish fails":
        (root / paths.LOCK_FILE).unlink()  # the local lock's; a non-local filesystem's would read it as held
        run = _failing_publish_run(root)
    good = {name: (root / paths.SEGMENTS / name).read_bytes() for name in os.listdir(root / paths.SEGMENTS)}
    work, error = {
        "work raises": (Work(rows=7, fail=RuntimeError("worker died")), RuntimeError),
        "too many videos fail": (_too_many_failures, FailureShareError),
        "interrupted": (Work(rows=7, fail=StageInterrupted(signal.SIGINT)), StageInterrupted),
        "publish fails": (Work(rows=7), OSError),
    }[failure]
    with pytest.raises(error):
        run_stage(SEGMENTS, run, {"k": 16}, work, StagesConfig())
    kept = {name: (root / paths.SEGMENTS / name).read_bytes() for name in os.listdir(root / paths.SEGMENTS)}
    assert kept == good  # every file of the good run, byte for byte
    assert not list((root / paths.WORK_DIR).glob(f"{paths.SEGMENTS}.replaced-*"))


def test_an_output_a_killed_publish_left_moved_aside_is_put_back(tmp_path):
    run, config = open_run(str(tmp_path / "run")), StagesConfig()
    run_stage(SEGMENTS, run, {"k": 8}, Work(rows=3), config)
    run_stage(SCORES, run, {}, Work(rows=2), config)
    work = tmp_path / "run" / paths.WORK_DIR
    # Killed between the publish's two moves: the earlier segments aside, their successor not in place.
    os.rename(tmp_path / "run" / paths.SEGMENTS, work / f"{paths.SEGMENTS}.replaced-0000dead")
    # Killed after both moves, before deleting what was replaced: a stale copy beside the new scores.
    (work / f"{paths.SCORES}.replaced-0000beef").mkdir()
    skipped = run_stage(SEGMENTS, run, {"k": 8}, Work(), config)
    assert isinstance(skipped, Skipped) and table_of(run, paths.SEGMENTS) == [0, 1, 2]
    assert sorted(os.listdir(work)) == []
