"""The console: progress bars (lines when standard error is not a terminal), the quiet session that sends log
records to the run's log file, and a real stage run whose console stays short while its log file, and the
Ray workers' logs beside it, hold the rest; ``--verbose`` puts the records back on the console."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.fs as pafs

from dualvad import console, paths
from dualvad.cli import main
from dualvad.rundir import open_run

from objectstore import moto_s3, s3_env

# A stage run's console at most: the log line, Ray's start (its token warning and dualvad's line saying
# where its dashboard and logs are), four progress lines, the summary and the worker-log copy: 9, and
# a margin for a warning of Ray's own.
STAGE_CONSOLE_LINES = 12
log = logging.getLogger("dualvad.test_console")


def test_a_bar_off_a_terminal_prints_one_line_per_quarter_with_count_rate_and_eta(capsys):
    with console.session(), console.bar("ingest", 10, "videos") as advance:
        for _ in range(10):
            advance(1)
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(" [")[0] for line in lines] == [
        "ingest: 3/10 videos (30%)", "ingest: 5/10 videos (50%)", "ingest: 8/10 videos (80%)",
        "ingest: 10/10 videos (100%)"]
    assert all(" videos/s]" in line and "<" in line for line in lines)  # elapsed<remaining, rate


def test_a_counter_draws_done_of_total_callbacks_and_nothing_shows_outside_a_session(capsys):
    with console.bar("ingest", 4, "videos") as advance:  # no session: the library called from Python
        advance(4)
    console.counter("synth", "videos")(2, 2)
    assert capsys.readouterr().err == ""
    with console.session():
        report = console.counter("synth", "videos")
        for done in (1, 2, 3, 4):
            report(done, 4)
    assert [line.split(" [")[0] for line in capsys.readouterr().err.splitlines()] == [
        "synth: 1/4 videos (25%)", "synth: 2/4 videos (50%)", "synth: 3/4 videos (75%)",
        "synth: 4/4 videos (100%)"]


def test_a_quiet_session_logs_to_the_file_and_shows_only_warnings_and_shown_lines(tmp_path, capsys):
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    log_file = tmp_path / "logs" / "x.log"
    with console.session(str(log_file)):
        assert console.quiet()
        log.info("decoded 3 videos")
        log.info("dashboard at http://127.0.0.1:8265", extra=console.SHOWN)
        log.warning("video b.mp4 is short")
    assert capsys.readouterr().err.splitlines() == [
        "dashboard at http://127.0.0.1:8265", "WARNING dualvad.test_console: video b.mp4 is short"]
    written = log_file.read_text().splitlines()
    assert [line.split(" ", 2)[2] for line in written] == [
        "INFO dualvad.test_console: decoded 3 videos",
        "INFO dualvad.test_console: dashboard at http://127.0.0.1:8265",
        "WARNING dualvad.test_console: video b.mp4 is short"]
    assert (root.handlers, root.level, console.active()) == (handlers, level, False)  # all undone


def test_a_verbose_session_shows_every_record_and_still_logs_to_the_file(tmp_path, capsys):
    with console.session(str(tmp_path / "x.log"), verbose=True):
        assert not console.quiet()
        log.info("decoded 3 videos")
    assert capsys.readouterr().err.rstrip().endswith("INFO dualvad.test_console: decoded 3 videos")
    assert "decoded 3 videos" in (tmp_path / "x.log").read_text()


def test_a_stage_run_prints_a_few_lines_and_logs_the_rest_in_the_run(tmp_path):
    """A real ``dualvad ingest`` in its own process, on its own local Ray (log_to_driver is set when Ray
    starts), with standard error not a terminal as in CI."""
    corpus, run = tmp_path / "corpus", tmp_path / "run"
    assert main(["synth", "--out", str(corpus), "--videos", "3", "synth.seconds=1.0"]) == 0
    env = {**os.environ, "RAY_ADDRESS": "local", "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0"}
    done = subprocess.run([sys.executable, "-m", "dualvad.cli", "ingest", "--corpus", str(corpus), "--run",
                           str(run), "--segments", "4", "ingest.cpus_per_worker=0.5", "ray.num_cpus=2"],
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    shown = done.stdout.splitlines()
    assert done.returncode == 0, done.stdout
    assert len(shown) <= STAGE_CONSOLE_LINES, done.stdout
    assert any(line.startswith("ingest: 3 videos (0 from an interrupted run, 3 processed), 12 segments "
                               "written, 0 failures, ") and line.endswith(f" -> {run}/segments")
               for line in shown), done.stdout
    assert any(line.startswith("ingest: 3/3 videos (100%) [") for line in shown), done.stdout
    assert any(line.startswith("Ray: started a local instance with 2 CPUs; dashboard off") for line in shown)
    logs = run / paths.LOGS
    (log_file,) = logs.glob("*-ingest.log")
    assert f"log: {log_file}" in shown
    written = log_file.read_text()
    # what the console no longer shows: dualvad's per-video progress and Ray Data's execution records
    assert "ingest: 3/3 videos decoded, 0 failed" in written and "Starting execution of Dataset" in written
    assert "Starting execution" not in done.stdout and "(pid=" not in done.stdout
    workers = log_file.with_suffix(paths.RAY_LOGS_SUFFIX)
    assert f"Ray's worker logs copied to {workers}" in shown
    assert list(workers.glob("worker-*")) and (workers / "ray-data").is_dir()


def test_verbose_shows_every_record_on_the_console_and_dry_run_writes_no_log(ray_session, tmp_path, capsys):
    corpus, run = tmp_path / "corpus", tmp_path / "run"
    assert main(["synth", "--out", str(corpus), "--videos", "2", "synth.seconds=1.0"]) == 0
    stage = ["ingest", "--corpus", str(corpus), "--run", str(run), "--segments", "4",
             "ingest.cpus_per_worker=0.5"]
    assert main([*stage, "--dry-run", "--verbose"]) == 0
    assert not run.exists()  # a dry run writes nothing, no log either
    capsys.readouterr()
    assert main(stage) == 0
    quiet = capsys.readouterr()
    assert main([*stage, "--force", "--verbose"]) == 0
    verbose = capsys.readouterr()
    # dualvad's own INFO records (Ray's handlers write to the stream of their import, past capsys)
    decoded = "INFO dualvad.pipeline.ingest: ingest: 2/2 videos decoded, 0 failed"
    assert decoded not in quiet.err and decoded in verbose.err
    assert quiet.out.startswith("ingest: 2 videos") and verbose.out.startswith("ingest: 2 videos")
    assert len(list(Path(run, paths.LOGS).glob("*-ingest.log"))) >= 1


def test_a_command_on_object_storage_logs_locally_and_copies_the_log_to_the_run(monkeypatch, capsys):
    """The log file is local while the command runs (the console names it) and moved to ``RUN/logs/`` as
    it ends, also when it fails: here ``score`` on a run with no segments (exit 1, before any Ray work)."""
    with moto_s3("runs") as endpoint:
        for key, value in s3_env(endpoint).items():
            monkeypatch.setenv(key, value)
        assert main(["score", "--run", "s3://runs/empty"]) == 1
        err = capsys.readouterr().err
        (line,) = [line for line in err.splitlines() if line.startswith("log: ")]
        local, _, where = line.removeprefix("log: ").partition(", ")
        assert where == "copied to s3://runs/empty/logs/ as the command ends"
        assert "run `dualvad ingest` first" in err
        run = open_run("s3://runs/empty")
        copied = [info.base_name for info in run.fs.get_file_info(pafs.FileSelector(run.path(paths.LOGS)))]
        assert copied == [Path(local).name] and Path(local).name.endswith("-score.log")
        with run.fs.open_input_stream(run.path(paths.LOGS, Path(local).name)) as stream:
            assert f"log: {local}, copied to s3://runs/empty/logs/" in stream.read().decode()
        assert not Path(local).parent.exists()  # the local folder goes once its copy is on the store
