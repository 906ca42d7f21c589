"""``ray job submit`` of ``jobs/pipeline.py`` against a real ``ray start --head`` on loopback (2 CPUs, token
auth), as docs/cluster.md tells a user to do it: the job runs this checkout (``--working-dir``), every stage
publishes its output, and stopping the head leaves no process behind.

The head has its own ports and temp dir and never touches the test session's Ray or ``~/.ray``: the token
comes from ``RAY_AUTH_TOKEN`` and ``HOME`` is a temp folder. It is stopped by signalling the processes whose
command line names its temp dir, not with ``ray stop``, which would stop every Ray of this user on the
machine (the test session's, a colleague's experiment). Not ``ray start --block`` either: it ends the whole
head when one helper process fails to start, as the Ray Client server does when the raylet registers
slowly on 2 loaded cores.
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
from pathlib import Path

import psutil
import pytest

from dualvad import paths
from dualvad.corpus import SynthSpec, generate_corpus
from dualvad.rundir import open_run
from dualvad.stages import read_record

from loopback import free_port
from tinyrun import OUTPUTS, TINY

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
START_S = 300  # a fresh head: 95 s measured on 2 cores under a load average of 16
JOB_S = 900  # the whole pipeline on the tiny corpus: 458 s measured on 2 cores under a load average of 16

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
def ray_head(tmp_path):
    """A ``ray start --head`` on loopback with 2 CPUs and token auth: (dashboard address, env)."""
    temp = tempfile.mkdtemp(prefix="rayjob", dir="/tmp")  # short: Ray's socket paths must stay < 108 chars
    home = tmp_path / "home"
    home.mkdir()
    env = _env(home, secrets.token_hex(16))
    dashboard = free_port()
    command = [str(BIN / "ray"), "start", "--head", "--num-cpus=2", "--num-gpus=0",
               "--node-ip-address=127.0.0.1", f"--port={free_port()}", "--include-dashboard=true",
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
    """Wait until the head's job server answers an authenticated request."""
    deadline = time.monotonic() + START_S
    while True:
        probe = subprocess.run([str(BIN / "ray"), "job", "list", "--address", address], env=env,
                               capture_output=True, text=True, timeout=60)
        if probe.returncode == 0:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"the head's job server did not answer within {START_S} s:\n{probe.stderr[-3000:]}")
        time.sleep(3)


def _stop(temp: str) -> None:
    """SIGTERM every process of this head (its command line names ``temp``), SIGKILL what is left after a
    grace period; then none may remain."""
    for process in _ray_processes(temp):
        with contextlib.suppress(psutil.NoSuchProcess):
            process.terminate()
    _, alive = psutil.wait_procs(_ray_processes(temp), timeout=30)
    for process in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(alive, timeout=15)
    left = _ray_processes(temp)
    assert not left, f"processes left after stopping the head: {[p.info['cmdline'][:2] for p in left]}"
    shutil.rmtree(temp, ignore_errors=True)


def test_ray_job_submit_runs_the_whole_pipeline(ray_head, tmp_path):
    address, env = ray_head
    generate_corpus(tmp_path / "corpus", SynthSpec(videos=12, seconds=1.0))  # both labels in train
    run = tmp_path / "run"
    command = [str(BIN / "ray"), "job", "submit", "--address", address, "--working-dir", str(ROOT), "--",
               "python", "jobs/pipeline.py", f"corpus={tmp_path / 'corpus'}", f"run={run}", *TINY]
    job = subprocess.run(command, env=env, capture_output=True, text=True, timeout=JOB_S)
    output = job.stdout + job.stderr
    (tmp_path / "job.log").write_text(output)  # the stage summary lines give each stage's seconds
    assert job.returncode == 0, output[-6000:]
    job_id = re.search(r"raysubmit_\w+", output).group(0)
    status = subprocess.run([str(BIN / "ray"), "job", "status", job_id, "--address", address], env=env,
                            capture_output=True, text=True, timeout=60)
    # Ray 2.60 prints "Job 'raysubmit_...' succeeded" (older versions: "... SUCCEEDED")
    assert re.search(rf"Job '{job_id}' succeeded", status.stdout + status.stderr, re.IGNORECASE), \
        status.stdout + status.stderr
    for stage, folder in OUTPUTS.items():
        record = read_record(open_run(str(run)), folder)
        assert record is not None and record["stage"] == stage, f"{stage}: no published output"
        assert f"{stage}: " in output  # its summary line
    assert (run / paths.FINETUNE / paths.FINETUNE_FINAL_DIR / "config.json").is_file()
    metrics = json.loads((run / paths.EVAL / paths.METRICS_FILE).read_text())
    assert list(metrics["metrics"]) == ["scorer", "vlm/focused"]
    # the job ran this checkout's code (the working dir): an install without the `pipeline` command exits 2
    assert "pipeline: done" in output
