"""The fault tests' helpers (tests/raykill.py) on their own: a failing check thaws what it stopped, and a
half-written Ray Train snapshot reads as nothing registered yet."""

from __future__ import annotations

import subprocess
import sys
import time

import psutil
import pytest

from raykill import SNAPSHOT_FILE, freeze_when, registered_result

MARKER = "raykill-test-sleeper"


def _wait_for_status(pid: int, stopped: bool, timeout_s: float = 60.0) -> bool:
    """Whether process ``pid`` is (``stopped``) or is not stopped within the bound: a signal is delivered
    asynchronously, so its effect is waited for, never assumed."""
    deadline = time.monotonic() + timeout_s
    while (psutil.Process(pid).status() == psutil.STATUS_STOPPED) != stopped:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_a_check_that_raises_leaves_the_processes_running(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", MARKER])
    try:
        def broken() -> bool:
            assert _wait_for_status(sleeper.pid, stopped=True)  # frozen before the check reads
            raise ValueError("the condition could not be read")

        with pytest.raises(ValueError, match="could not be read"):
            freeze_when(MARKER, broken, timeout_s=60)
        assert _wait_for_status(sleeper.pid, stopped=False)
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_half_written_snapshot_is_nothing_registered_yet(tmp_path):
    """Ray Train rewrites its snapshot in place: read mid-write it is empty, which from_path refuses."""
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / SNAPSHOT_FILE).write_text("")
    assert registered_result(tmp_path) is None
