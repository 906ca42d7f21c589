"""``ray job submit`` of a stage's entry point in ``jobs/`` against a real ``ray start --head`` on loopback (2
CPUs, token auth), as docs/cluster.md tells a user to do it, with the corpus and the run directory on object
storage: a real S3 API (the session's moto server on loopback), reached through ``AWS_ENDPOINT_URL`` in the
head's environment, so every Ray process of the head has it. The job runs this checkout (``--working-dir``)
and its stage publishes on S3. The stage is ingest, whose workers decode the corpus on S3 and write their
parts there: its outputs must hold the rows of the demo test's run (the session's ``tiny_demo``, same
corpus and settings), compared row by row in key order except for the columns that name where the videos
are. The whole pipeline on S3 is tests/pipeline/test_pipeline_s3.py, on the session's Ray: a head of its
own costs a minute of start and cold workers on 2 cores, which this test pays once, for one stage.
Stopping the head leaves no process behind.

The head has its own ports and temp dir and never touches the test session's Ray or ``~/.ray``: the token
comes from ``RAY_AUTH_TOKEN`` and ``HOME`` is a temp folder. It is stopped by signalling the processes whose
command line names its temp dir, not with ``ray stop``, which would stop every Ray of this user on the machine
(the test session's, a colleague's experiment). Not ``ray start --block`` either: it ends the whole head when
one helper process fails to start, as the Ray Client server does when the raylet registers slowly on 2 loaded
cores.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest
from runcompare import differences

from dualvad import paths
from dualvad.rundir import open_run
from dualvad.stages.records import read_record

from loopback import free_port
from objectstore import s3_environment, upload_folder
from tinyrun import TINY

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
START_S = 300  # a fresh head: 95 s measured on 2 cores under a load average of 16
JOB_S = 600  # ingest of the tiny corpus on a cold head (the whole pipeline: 458 s measured on 2 cores under a
#              load average of 16)

def _env(home: Path, token: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("RAY_")}
    return {**env, "HOME": str(home), "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token,
            "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0", "RAY_USAGE_STATS_ENABLED": "0",
            "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}


def _ray_processes(marker: str) -> list[psutil.Process]:
    """Processes whose command line names ``marker`` (the head's temp dir, in every Ray process's flags)."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        try:
            if any(marker in part for part in process.info["cmdline"] or []):
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


@pytest.fixture
def ray_head(tmp_path, session_s3):
    """A ``ray start --head`` on loopback with 2 CPUs and token auth, the S3 settings in its environment:
    (dashboard address, env)."""
    temp = tempfile.mkdtemp(prefix="rayjob", dir="/tmp")  # short: Ray's socket paths must stay < 108 chars
    home = tmp_path / "home"
    home.mkdir()
    env = {**_env(home, secrets.token_hex(16)), **session_s3}
    dashboard, gcs = free_port(), free_port()
    command = [str(BIN / "ray"), "start", "--head", "--num-cpus=2", "--num-gpus=0",
               "--node-ip-address=127.0.0.1", f"--port={gcs}", "--include-dashboard=true",
               "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
               f"--ray-client-server-port={free_port()}", f"--metrics-export-port={free_port()}",
               f"--dashboard-agent-listen-port={free_port()}", f"--temp-dir={temp}", "--disable-usage-stats"]
    address = f"http://127.0.0.1:{dashboard}"
    try:
        started = subprocess.run(command, env=env, capture_output=True, text=True, timeout=START_S)
        assert started.returncode == 0, started.stdout[-3000:] + started.stderr[-3000:]
        _wait_up(address, env)
        yield address, env
    finally:
        _stop(temp)


def _wait_up(address: str, env: dict[str, str]) -> None:
    """Wait until the head's job server answers an authenticated request (the jobs list ``ray job list``
    reads, asked over HTTP here: a ``ray`` CLI process per probe costs seconds of CPU on 2 loaded cores)."""
    request = urllib.request.Request(f"{address}/api/jobs/",
                                     headers={"Authorization": f"Bearer {env['RAY_AUTH_TOKEN']}"})
    deadline = time.monotonic() + START_S
    while True:
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                json.load(answer)  # the jobs, as JSON: the job server is up and took the token
                return
        except urllib.error.HTTPError as error:
            if error.code in (401, 403):  # up, and it refused the token: waiting will not help
                pytest.fail(f"the head's job server refused the token: {error}")
            problem: Exception = error  # 5xx while it starts
        except (OSError, ValueError) as error:  # not listening yet, not JSON yet
            problem = error
        if time.monotonic() > deadline:
            pytest.fail(f"the head's job server did not answer within {START_S} s: {problem}")
        time.sleep(0.5)


def _stop(temp: str) -> None:
    """SIGTERM every process of this head (its command line names ``temp``), SIGKILL what is left after a
    grace period; then none may remain."""
    for process in _ray_processes(temp):
        with contextlib.suppress(psutil.NoSuchProcess):
            process.terminate()
    # a test head has no state to save: 3 s for the processes that exit on SIGTERM, then SIGKILL
    _, alive = psutil.wait_procs(_ray_processes(temp), timeout=3)
    for process in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(alive, timeout=15)
    left = _ray_processes(temp)
    assert not left, f"processes left after stopping the head: {[p.info['cmdline'][:2] for p in left]}"
    shutil.rmtree(temp, ignore_errors=True)


def test_ray_job_submit_runs_a_stage_on_s3_with_the_outputs_of_a_local_run(ray_head, session_s3, tiny_demo,
                                                                           tmp_path):
    address, env = ray_head
    local_run, code, _ = tiny_demo
    assert code == 0, "the demo test's run failed: see test_demo_runs_every_stage_and_prints_outputs"
    folder = f"data/{tmp_path.name}"  # the store lives for the session: a folder of this test's own
    with s3_environment(session_s3):
        upload_folder(local_run / "corpus", f"s3://{folder}/corpus")
    command = [str(BIN / "ray"), "job", "submit", "--address", address, "--working-dir", str(ROOT), "--",
               "python", "jobs/ingest.py", f"corpus=s3://{folder}/corpus", f"run=s3://{folder}/run", *TINY]
    job = subprocess.run(command, env=env, capture_output=True, text=True, timeout=JOB_S)
    output = job.stdout + job.stderr
    (tmp_path / "job.log").write_text(output)
    assert job.returncode == 0, output[-6000:]
    job_id = re.search(r"raysubmit_\w+", output).group(0)
    status = subprocess.run([str(BIN / "ray"), "job", "status", job_id, "--address", address], env=env,
                            capture_output=True, text=True, timeout=60)
    # Ray 2.60 prints "Job 'raysubmit_...' succeeded" (older versions: "... SUCCEEDED")
    assert re.search(rf"Job '{job_id}' succeeded", status.stdout + status.stderr, re.IGNORECASE), \
        status.stdout + status.stderr
    # the job ran jobs/ingest.py from the working dir (the head has no checkout) on the videos on S3
    summary = rf"^ingest: 12 videos .* -> {re.escape(folder)}/run/segments$"
    assert re.search(summary, output, re.MULTILINE), output[-3000:]
    with s3_environment(session_s3):
        remote, local = open_run(f"s3://{folder}/run"), open_run(str(local_run))
        record = read_record(remote, paths.SEGMENTS)
        assert record is not None and record["stage"] == "ingest"
        assert record["fingerprint"] == read_record(local, paths.SEGMENTS)["fingerprint"]
        assert not (differ := differences(local, remote, paths.SEGMENTS)), differ
