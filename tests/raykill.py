"""Killing a process of a running Ray stage from outside it, as a lost node or an OOM kill would end it."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pyarrow.fs as pafs

from dualvad.train.resume import SNAPSHOT_FILE, read_snapshot


def descendants_named(marker: str) -> list[int]:
    """Pids of this process's descendants whose command line contains ``marker`` (Ray's process titles name
    the actor or task: ``ray::RayTrainWorker``, ``...ScoreWorker...``); only this test session's Ray, whose
    raylet ``ray.init`` started, never another Ray on the machine."""
    pids = []
    for process in psutil.Process().children(recursive=True):
        try:
            if any(marker in part for part in process.cmdline()):
                pids.append(process.pid)
        except psutil.NoSuchProcess:  # ended between the listing and the read: not one to kill
            continue
    return sorted(pids)


class Killer(threading.Thread):
    """Waits until ``ready()`` holds, then SIGKILLs the first descendant named ``marker``; ``pid`` is the
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
        deadline = time.monotonic() + self.timeout_s
        while not self.stop.is_set() and time.monotonic() < deadline:
            if self.ready() and (pids := descendants_named(self.marker)):
                os.kill(pids[0], signal.SIGKILL)
                self.pid = pids[0]
                return
            time.sleep(0.02)


def snapshot_under(storage: Path) -> dict:
    """Ray Train's checkpoint snapshot of the run stored anywhere under ``storage``
    (:func:`dualvad.train.resume.read_snapshot`); ``{}`` before the first registration."""
    for snapshot in storage.rglob(SNAPSHOT_FILE):
        return read_snapshot(pafs.LocalFileSystem(), str(snapshot.parent)) or {}
    return {}


def registered_metric(storage: Path, key: str) -> float:
    """The metric ``key`` of the latest checkpoint Ray Train's controller registered for a run stored anywhere
    under ``storage`` (-1 before the first). Registered, not merely written: the controller registers a
    checkpoint when it next polls the workers; a worker killed before that takes its unpolled reports with
    it, and the new worker group starts from an earlier checkpoint."""
    latest = snapshot_under(storage).get("latest_checkpoint_result")
    return float(latest["metrics"][key]) if latest else -1
