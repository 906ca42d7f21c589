"""SIGTERM and SIGINT while a stage runs: raised as :class:`StageInterrupted` in the main thread, so the
stage's finished work is written and kept for the next run."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar


class StageInterrupted(BaseException):  # noqa: N818 - like KeyboardInterrupt, not an Exception
    """SIGTERM or SIGINT arrived while a stage ran; its finished work is kept for the next run."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum


_INTERRUPT_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_T = TypeVar("_T")
_active_interrupt: Callable[[int, object], None] | None = None  # while a stage runs in the main thread


@contextlib.contextmanager
def raise_on_signals() -> Iterator[None]:
    """SIGTERM and SIGINT raise :class:`StageInterrupted` in the main thread while the stage runs, so
    its ``finally`` blocks write what is finished; elsewhere (a worker thread) signals are left alone.

    The handler's exception lands wherever the main thread is, and some places drop it (an exception
    raised in a finaliser is printed and ignored, a library may catch everything): a stage whose work
    then returns normally still raises :class:`StageInterrupted` here, before anything is published."""
    global _active_interrupt
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def interrupt(signum: int, _frame: object) -> None:
        received.append(signum)
        raise StageInterrupted(signum)

    previous = {sig: signal.signal(sig, interrupt) for sig in _INTERRUPT_SIGNALS}
    _active_interrupt = interrupt
    try:
        yield
    finally:
        _active_interrupt = None
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if received:
        raise StageInterrupted(received[0])


def wait_interruptibly(call: Callable[[], _T], poll_s: float = 0.2) -> _T:
    """``call()``, run in a helper thread while the main thread waits on it, so that a SIGTERM / SIGINT
    interrupts the stage at once (:class:`StageInterrupted`; the helper thread is left to end with the
    process).

    For calls that block in ``ray.get``, such as Ray Train's ``fit()``: Ray runs no Python signal handler
    while ``ray.get`` waits, so in the main thread the signal would be noticed only once training ended. Off
    the main thread (nothing to interrupt there) ``call`` runs directly.

    Raises:
        StageInterrupted: a signal arrived while waiting.
        BaseException: whatever ``call`` raised.
    """
    if threading.current_thread() is not threading.main_thread():
        return call()
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as error:  # noqa: BLE001 - handed to the waiting main thread, raised there
            outcome["error"] = error

    helper = threading.Thread(target=run, name="stage-work", daemon=True)
    helper.start()
    while helper.is_alive():
        helper.join(poll_s)  # returns to Python between waits: the signal handler runs here
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def reclaim_signals() -> None:
    """Put the running stage's SIGTERM / SIGINT handlers back; call it after starting a library that
    installs its own (``ray.init`` does: its handler would end the process without writing anything)."""
    if _active_interrupt is not None and threading.current_thread() is threading.main_thread():
        for sig in _INTERRUPT_SIGNALS:
            signal.signal(sig, _active_interrupt)
