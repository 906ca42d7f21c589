"""The two ways a user starts the app, each as a real subprocess on its own local Ray: ``serve run
serve_config.yaml`` (the shipped file, only its port changed) and ``dualvad serve`` (no ``--run``: the demo
run). Both run from a folder laid out as ``make demo`` leaves it, so the config's relative paths hold."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import yaml

from dualvad import paths

from loopback import free_port

ROOT = Path(__file__).parent.parent.parent
STARTUP_S = 300  # a fresh Ray plus three deployments loading torch models on 2 busy cores
RAY_STARTUP_TIMEOUT = "timed out during startup"  # what Ray prints when its raylet missed its 30 s
LAUNCHES = 3
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def demo_folder(evaluated_copy, tmp_path_factory) -> Path:
    """A working folder whose ``runs/demo`` is the evaluated run with the tiny VLM as its fine-tuned model
    (every entry linked, nothing copied) and whose ``runs/demo/corpus`` is the run's corpus."""
    config, _, tiny = evaluated_copy
    folder = tmp_path_factory.mktemp("launch")
    demo = folder / "runs" / "demo"
    demo.mkdir(parents=True)
    for entry in Path(config.run).iterdir():
        if entry.name not in (paths.LOCK_FILE, paths.LOCK_OWNER_FILE, paths.FINETUNE):
            (demo / entry.name).symlink_to(entry)
    (demo / paths.FINETUNE).mkdir()
    (demo / paths.FINETUNE / "final").symlink_to(tiny)
    if not (demo / "corpus").exists():
        (demo / "corpus").symlink_to(Path(config.corpus).resolve())
    return folder


class _RayDidNotStart(Exception):
    """The launched process exited because its fresh Ray missed Ray's own startup bound."""


def _wait_until(process: subprocess.Popen, log: Path, ready: Callable[[], bool], what: str) -> None:
    """Poll ``ready`` until it holds (a condition, with a bound); fails with the log's tail if the process
    exits or STARTUP_S passes first; raises :class:`_RayDidNotStart` where Ray's startup bound ended it."""
    deadline = time.monotonic() + STARTUP_S
    while not ready():
        if process.poll() is not None:
            if RAY_STARTUP_TIMEOUT in log.read_text():
                raise _RayDidNotStart(log.read_text()[-4000:])
            pytest.fail(f"exited {process.returncode} before {what}:\n{log.read_text()[-4000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"not {what} within {STARTUP_S} s:\n{log.read_text()[-4000:]}")
        time.sleep(0.5)


def _start(command: list[str], cwd: Path, log: Path, ready: Callable[[], bool],
           what: str) -> subprocess.Popen:
    """Launch ``command`` and wait until ``ready``. Ray gives a fresh node's raylet a fixed 30 s to register
    (``ray/_private/node.py``, no setting changes it), which a 2-core machine busy with the rest of the suite
    can miss: such a launch, and only such, is launched again, at most ``LAUNCHES`` times in all, each
    failed attempt's log kept beside ``log``."""
    for attempt in range(1, LAUNCHES + 1):
        process = _launch(command, cwd, log)
        try:
            _wait_until(process, log, ready, what)
            return process
        except _RayDidNotStart as error:
            _stop(process)
            log.rename(log.with_suffix(f".attempt{attempt}.log"))
            last = error
    pytest.fail(f"Ray did not start in {LAUNCHES} launches:\n{last}")


def _healthy(client: httpx.Client) -> Callable[[], bool]:
    """Whether ``/healthz`` answers ok now."""

    def healthy() -> bool:
        try:
            return client.get("/healthz").json() == {"status": "ok"}
        except (httpx.HTTPError, ValueError):
            return False

    return healthy


def _printed(log: Path, text: str) -> Callable[[], bool]:
    """Whether the process's output holds ``text`` now."""
    return lambda: text in log.read_text()


def _stop(process: subprocess.Popen) -> None:
    """Ctrl-C as a user would, then wait; kill the group if it does not end."""
    try:
        os.killpg(process.pid, signal.SIGINT)
    except ProcessLookupError:  # the process and its group have already gone
        return
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


def _launch(command: list[str], cwd: Path, log: Path) -> subprocess.Popen:
    # RAY_ADDRESS=local: a fresh Ray, never the test session's; the session Ray keeps running meanwhile
    env = {**os.environ, "RAY_ADDRESS": "local", "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0",
           "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    # Ctrl-C must reach the child as from a terminal. Some earlier test of the suite leaves this process
    # ignoring SIGINT, and an ignored signal stays ignored across exec (a handler does not): `serve run`
    # then ignored _stop's Ctrl-C and was killed after 60 s. So the child is started while SIGINT has
    # Python's handler here, and starts with the default.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with log.open("w") as out:
            return subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
    finally:
        signal.signal(signal.SIGINT, previous)


def _detect_one(client: httpx.Client, corpus: Path) -> dict:
    video = next((corpus / "videos").rglob("*.mp4"))
    response = client.post("/v1/detect", json={"uri": str(video), "explain": False})
    assert response.status_code == 200, response.text
    return response.json()


def test_serve_run_of_the_shipped_config_answers(demo_folder, evaluated_copy):
    config = yaml.safe_load((ROOT / "serve_config.yaml").read_text())
    port = free_port()
    config["http_options"]["port"] = port
    (demo_folder / "serve_config.yaml").write_text(yaml.safe_dump(config))
    log = demo_folder / "serve-run.log"
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
    process = _start([str(BIN / "serve"), "run", "serve_config.yaml"], demo_folder, log, _healthy(client),
                     "answering /healthz")
    try:
        info = client.get("/v1/info").json()
        assert info["settings"]["max_upload_bytes"] == config["applications"][0]["args"]["max_upload_bytes"]
        result = _detect_one(client, demo_folder / "runs" / "demo" / "corpus")
        assert len(result["frames"]) == evaluated_copy[0].sample.budget
    finally:
        _stop(process)


def test_dualvad_serve_without_run_serves_the_demo_run(demo_folder, evaluated_copy):
    """It says it serves only once the routes answer, and SIGTERM (what a process manager sends) stops it
    with exit 0 and a line, not Ray's stack dump or a traceback (Ctrl-C takes the same handler)."""
    port = free_port()
    log = demo_folder / "dualvad-serve.log"
    line = f"on http://127.0.0.1:{port}/ (Ctrl-C stops)"
    process = _start([str(BIN / "dualvad"), "serve", "--port", str(port)], demo_folder, log,
                     _printed(log, line), f"printing {line!r}")
    try:
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
        assert client.get("/healthz").json() == {"status": "ok"}  # at once: no retry
        assert client.get("/v1/info").json()["models"]["judge"]["vlm"].endswith("finetune/final")
        assert len(_detect_one(client, demo_folder / "runs" / "demo" / "corpus")["frames"]) == 8
        os.killpg(process.pid, signal.SIGTERM)
        assert process.wait(timeout=60) == 0, log.read_text()[-4000:]
    finally:
        if process.poll() is None:
            _stop(process)
    output = log.read_text()
    assert "stopping: shutting down the local Ray" in output
    assert "Traceback" not in output and "SIGTERM received" not in output, output[-4000:]


def test_dualvad_serve_without_run_or_demo_says_make_demo(tmp_path):
    done = subprocess.run([str(BIN / "dualvad"), "serve"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2 and "make demo" in done.stderr, done.stderr


_FLAKY_LAUNCH = """
import pathlib, sys, time
count = pathlib.Path(sys.argv[1])
count.write_text(str(int(count.read_text() or 0) + 1) if count.exists() else "1")
if count.read_text() == "1":
    sys.exit(f"Exception: The current node {sys.argv[2]}.")
print("ready", flush=True)
time.sleep(120)  # a server; _stop's Ctrl-C ends it
"""


@pytest.mark.parametrize("message, launches", [(RAY_STARTUP_TIMEOUT, 2), ("failed otherwise", 1)])
def test_only_a_launch_that_ray_did_not_start_is_launched_again(tmp_path, message, launches):
    count, log = tmp_path / "count", tmp_path / "out.log"
    command = [sys.executable, "-c", _FLAKY_LAUNCH, str(count), message]
    if launches == 1:
        with pytest.raises(pytest.fail.Exception, match="exited 1 before printing"):
            _start(command, tmp_path, log, _printed(log, "ready"), "printing 'ready'")
    else:
        # launched while this process ignores SIGINT, as the suite's process has been seen to: _stop's
        # Ctrl-C must still end the launch (exit by SIGINT), not the kill 60 s later
        ignored = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            process = _start(command, tmp_path, log, _printed(log, "ready"), "printing 'ready'")
        finally:
            signal.signal(signal.SIGINT, ignored)
        _stop(process)
        assert process.returncode == -signal.SIGINT, log.read_text()
        assert RAY_STARTUP_TIMEOUT in log.with_suffix(".attempt1.log").read_text()
    assert count.read_text() == str(launches)
