"""An exclusive lock on a run directory while a stage runs (``RUN/.lock``)."""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import socket
import time

import pyarrow.fs as pafs
from filelock import Timeout, UnixFileLock

from dualvad import paths
from dualvad.errors import StageError
from dualvad.rundir import RunDir

REMOTE_LOCK_STALE_S = 6 * 3600  # a lock file on object storage older than this is taken over


class RunBusyError(StageError):
    """Another process holds the run directory's lock."""


class RunLock:
    """An exclusive lock on a run directory while a stage runs.

    Local runs: ``filelock``'s :class:`~filelock.UnixFileLock` (``flock``) on ``RUN/.lock``, tried once, never
    waited for; the kernel releases it when the process dies, so a killed stage never leaves the run locked.
    The holder writes who it is to ``RUN/.lock.owner`` once it holds the lock and removes it before
    releasing: ``.lock`` is filelock's to create, truncate or delete. Object storage has no lock primitive:
    the lock is a file holding its owner, taken over after ``REMOTE_LOCK_STALE_S``; two processes starting
    within the same moment could both take it (best effort).
    """

    def __init__(self, run: RunDir, stage: str) -> None:
        self.run, self.stage = run, stage
        self._lock: UnixFileLock | None = None

    def __enter__(self) -> RunLock:
        self.run.makedirs()
        owner = json.dumps({"stage": self.stage, "pid": os.getpid(), "host": socket.gethostname(),
                            "since": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")})
        if isinstance(self.run.fs, pafs.LocalFileSystem):
            self._lock_local(owner)
        else:
            self._lock_remote(owner)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._lock is None:  # object storage: the file is the lock
            self._delete(paths.LOCK_FILE)
            return
        self._delete(paths.LOCK_OWNER_FILE)  # first: while held, no next holder has written its own
        self._lock.release()
        self._lock = None

    def _delete(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):  # already gone: nothing to release
            self.run.fs.delete_file(self.run.path(name))

    def _lock_local(self, owner: str) -> None:
        lock = UnixFileLock(self.run.path(paths.LOCK_FILE), timeout=0)  # busy: fail now, do not queue
        try:
            lock.acquire()
        except Timeout:
            raise self._busy(self._local_holder()) from None
        self._lock = lock
        self.run.write_text(owner, paths.LOCK_OWNER_FILE)  # written whole (temp file + rename)

    def _local_holder(self) -> str:
        """The owner file's text; empty in the moment between the holder's lock and its owner file."""
        try:
            return self.run.read_text(paths.LOCK_OWNER_FILE)
        except FileNotFoundError:
            return ""

    def _lock_remote(self, owner: str) -> None:
        path = self.run.path(paths.LOCK_FILE)
        info = self.run.fs.get_file_info(path)
        if info.type == pafs.FileType.File and info.mtime is not None:
            age = time.time() - info.mtime.timestamp()
            if age < REMOTE_LOCK_STALE_S:
                with self.run.fs.open_input_stream(path) as stream:
                    raise self._busy(stream.read().decode(errors="replace"))
        self.run.write_text(owner, paths.LOCK_FILE)

    def _busy(self, holder: str) -> RunBusyError:
        try:
            who = json.loads(holder)
            text = f"`dualvad {who['stage']}` (pid {who['pid']} on {who['host']}, since {who['since']})"
        except (ValueError, KeyError, TypeError):
            text = "another process"
        return RunBusyError(f"{self.run.uri} is in use by {text}; wait for it to finish, or use another "
                            "run directory")
