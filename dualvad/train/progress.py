"""A training stage's progress bar (:func:`dualvad.console.bar`) fed by Ray Train's reports.

``trainer.fit()`` blocks the driver while the workers train, and Ray Train calls a
:class:`ray.train.UserCallback` in its controller actor, not in the driver. So the callback puts the
epoch or step each report reached on a :class:`ray.util.queue.Queue` (a small Ray actor), and a driver
thread moves the bar from it. The bar moves once per report (``scorer.report_every`` epochs,
``finetune.report_every`` steps); outside a console session there is no bar and no queue.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from queue import Empty
from typing import Any

import ray
from ray.train import UserCallback
from ray.util.queue import Queue

from dualvad import console

_POLL_S = 0.5  # how often the driver thread checks for the end of training


class ReportProgress(UserCallback):
    """Runs in Ray Train's controller: after each report, puts ``metrics[key] + offset`` (the epochs or
    steps done) of rank 0 on ``queue``."""

    def __init__(self, queue: Queue, key: str, offset: int) -> None:
        self.queue, self.key, self.offset = queue, key, offset

    def after_report(self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any) -> None:
        if metrics and self.key in metrics[0]:
            self.queue.put_nowait(int(metrics[0][self.key]) + self.offset)


@contextlib.contextmanager
def training_bar(label: str, total: int, unit: str, key: str,
                 offset: int = 0) -> Iterator[list[UserCallback]]:
    """Yields the callbacks to pass to ``RunConfig(callbacks=...)``; while the block runs (``fit()``), a
    bar of ``total`` ``unit`` moves to each report's ``metrics[key] + offset``.

    Args:
        key, offset: the reported metric that counts the work done, and what to add to it (``"epoch"``, 1
            for 0-based epochs; ``"step"``, 0 for steps counted from 1).
    """
    if not console.active():
        yield []
        return
    queue, finished = Queue(), threading.Event()
    with console.bar(label, total, unit) as advance:
        mover = threading.Thread(target=_move, args=(queue, finished, advance), daemon=True,
                                 name=f"{label}-progress")
        mover.start()
        try:
            yield [ReportProgress(queue, key, offset)]
        finally:
            finished.set()
            mover.join()
            queue.shutdown()


def _move(queue: Queue, finished: threading.Event, advance: Any) -> None:
    """Driver thread: advance the bar to each reported count until training ends and the queue is empty."""
    shown = 0
    while True:
        try:
            done = queue.get(timeout=_POLL_S)
        except Empty:
            if finished.is_set():
                return
            continue
        except ray.exceptions.RayError:  # the queue's actor is gone (Ray shutting down): no more reports
            return
        if done > shown:
            advance(done - shown)
            shown = done
