"""Experiment tracking for the training loops (``finetune.tracking``, ``scorer.tracking``).

``"tensorboard"``: rank 0 writes TensorBoard event files with PyTorch's own writer
(``torch.utils.tensorboard.SummaryWriter``) into a folder on its local disk. Every checkpoint carries a copy
of that folder (``tensorboard/``), so a restarted worker group continues the same log from the checkpoint
it resumes from (the steps it re-runs are logged once) and the driver publishes the last checkpoint's copy
beside the model (``RUN/finetune/tensorboard``, ``RUN/scorer/tensorboard``): ``tensorboard --logdir RUN``
shows both. While a run is going, the latest checkpoint under ``RUN/.work`` holds the log so far. Nothing
leaves the run directory: no server, no account.

``"none"`` (the default): the step log (``train_log.json``, ``history.json``) only.

No Ray here: the loops in :mod:`dualvad.train` call it.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import typing
from pathlib import Path
from typing import Literal

from dualvad import paths

#: Where a run's metrics go besides its JSON step log.
Tracking = Literal["none", "tensorboard"]
TRACKING_CHOICES: tuple[str, ...] = typing.get_args(Tracking)


class Tracker:
    """One training process's metrics log. Only the process with ``write`` (rank 0) writes; elsewhere, and
    with ``kind="none"``, every method does nothing.

    Args:
        kind: a :data:`Tracking` value.
        write: whether this process writes (rank 0).
    """

    def __init__(self, kind: Tracking, write: bool) -> None:
        self.enabled = kind == "tensorboard" and write
        # The writer opens at the first log, so that restore() can put a checkpoint's events in first.
        self._writer = None
        self._folder = tempfile.mkdtemp(prefix="dualvad-tensorboard-") if self.enabled else None

    def restore(self, checkpoint_dir: str) -> None:
        """Continue the log a checkpoint carries (``checkpoint_dir/tensorboard``, written by :meth:`save`):
        after a restart, the new worker group logs on from the step it resumes at."""
        saved = Path(checkpoint_dir, paths.TENSORBOARD_DIR)
        if self._folder is None or not saved.is_dir():
            return
        if self._writer is not None:
            raise RuntimeError("Tracker.restore after the first log: the restored events would follow it")
        shutil.copytree(saved, self._folder, dirs_exist_ok=True)

    def log(self, step: int, metrics: dict[str, float | int | None], skip: tuple[str, ...] = ()) -> None:
        """One scalar per metric at ``step`` (tag = the metric's key); ``None`` (a metric this device cannot
        give, e.g. MFU on a CPU), non-finite values and the keys in ``skip`` are left out. TensorBoard stores
        scalars as float32."""
        if self._folder is None:
            return
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter  # needs the `tensorboard` package

            self._writer = SummaryWriter(log_dir=self._folder)
        for key, value in metrics.items():
            if key in skip or value is None or not math.isfinite(value):
                continue
            self._writer.add_scalar(key, float(value), global_step=step)

    def save(self, checkpoint_dir: str) -> None:
        """Flush the log and copy it into ``checkpoint_dir/tensorboard`` (a checkpoint being written)."""
        if self._folder is None:
            return
        if self._writer is not None:
            self._writer.flush()
        shutil.copytree(self._folder, Path(checkpoint_dir, paths.TENSORBOARD_DIR), dirs_exist_ok=True)

    def close(self) -> None:
        """Close the writer and delete the local folder (the checkpoints hold its copies)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None
