"""Killing a process of a running Ray stage from outside it, as a lost node or an OOM kill would end it."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pyarrow.fs as pafs
import ray.train
from ray.train.v2.api.exceptions import RayTrainError

#: The file Ray Train's controller rewrites at every registration (ray.train.v2's
#: CHECKPOINT_MANAGER_SNAPSHOT_FILENAME; tests/train/test_finetune.py checks the name).
SNAPSHOT_FILE = "checkpoint_manager_snapshot.json"


def descendants_named(marker: str, root: int | None = None) -> list[int]:
    """Pids of the descendants of ``root`` (default: this process) whose command line contains ``marker``
    (Ray's process titles name the actor or task: ``ray::RayTrainWorker``, ``...ScoreWorker...``); only the
    Ray that ``root`` started, never another Ray on the machine."""
    pids = []
    for process in psutil.Process(root).children(recursive=True):
        try:
            if any(marker in part for part in process.cmdline()):
                pids.append(process.pid)
        except psutil.NoSuchProcess:  # ended between the listing and the read: not one to stop
            continue
    return sorted(pids)


def _signal_all(pids: list[int], signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


def freeze_when(marker: str, ready: Callable[[], bool], root: int | None = None, timeout_s: float = 600.0,
                stop: threading.Event | None = None) -> list[int]:
    """The processes named ``marker`` (under ``root``), stopped (SIGSTOP) at a moment when ``ready()``
    holds; ``[]`` if the deadline passes or ``stop`` is set first.

    Each check stops the processes *before* reading ``ready()``: what it reads can then no longer change
    under the caller, and the work those processes hold is unfinished for certain, so a kill or a signal
    sent next lands mid-stage on any machine. The caller thaws (SIGCONT) or kills them.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not (stop and stop.is_set()):
        pids = descendants_named(marker, root)
        if pids:
            _signal_all(pids, signal.SIGSTOP)
            try:
                if ready():
                    return pids
            except BaseException:  # a failing check must not leave the stage stopped for ever
                _signal_all(pids, signal.SIGCONT)
                raise
            _signal_all(pids, signal.SIGCONT)
        time.sleep(0.02)
    return []


def thaw(pids: list[int]) -> None:
    """SIGCONT the processes :func:`freeze_when` stopped (those still alive)."""
    _signal_all(pids, signal.SIGCONT)


def kill_frozen(pids: list[int]) -> None:
    """SIGKILL processes left stopped once the test is done with them (a stopped process never notices that
    its Ray is gone, and would stay for ever)."""
    _signal_all(pids, signal.SIGKILL)


class Killer(threading.Thread):
    """Waits until ``ready()`` holds while the processes named ``marker`` are stopped (:func:`freeze_when`),
    then SIGKILLs the first of them and thaws the rest: the kill always lands mid-stage. ``pid`` is the
    killed process's, ``None`` when the stage ended first. As a context manager it watches while the block
    runs and stops with it."""

    def __init__(self, marker: str, ready: Callable[[], bool], timeout_s: float = 600.0) -> None:
        super().__init__(daemon=True)
        self.marker, self.ready, self.timeout_s = marker, ready, timeout_s
        self.pid: int | None = None
        self.stop = threading.Event()

    def __enter__(self) -> Killer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.join()

    def run(self) -> None:
        frozen = freeze_when(self.marker, self.ready, timeout_s=self.timeout_s, stop=self.stop)
        if frozen:
            os.kill(frozen[0], signal.SIGKILL)
            self.pid = frozen[0]
            thaw(frozen[1:])


def registered_result(storage: Path) -> ray.train.Result | None:
    """Ray Train's result of the run stored anywhere under ``storage`` as its controller registered it
    (``ray.train.Result.from_path``: ``metrics`` of the latest checkpoint, ``best_checkpoints`` the kept
    ones); ``None`` before the first registration, or while the snapshot is being rewritten (not
    atomically)."""
    for snapshot in storage.rglob(SNAPSHOT_FILE):
        try:
            result = ray.train.Result.from_path(str(snapshot.parent),
                                                storage_filesystem=pafs.LocalFileSystem())
        except (RuntimeError, ValueError, RayTrainError):  # the snapshot half written (read as empty JSON)
            return None
        return result if result.metrics else None
    return None


def registered_metric(storage: Path, key: str) -> float:
    """The metric ``key`` of the latest checkpoint Ray Train's controller registered for a run stored anywhere
    under ``storage`` (-1 before the first). Registered, not merely written: the controller registers a
    checkpoint when it next polls the workers; a worker killed before that takes its unpolled reports with
    it, and the new worker group starts from an earlier checkpoint."""
    result = registered_result(storage)
    return float(result.metrics[key]) if result is not None else -1
