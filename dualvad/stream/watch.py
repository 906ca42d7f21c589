"""``dualvad watch URL``: follow one live source with a run's detector until SIGINT/SIGTERM or a time limit.

Events go to a JSON Lines file (``--events``; standard output without it), a webhook (``--webhook``) and,
one line each, to standard error as they open and close. SIGINT or SIGTERM stops reading, closes the open
event (judged by the VLM within its budget) and delivers it before exiting.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any

from dualvad.stream.config import StreamConfig
from dualvad.stream.events import Event, EventKind, EventSink, JsonlSink, WebhookSink


@dataclass
class WatchRequest:
    """What ``dualvad watch`` was asked (its flags)."""

    url: str
    run: str
    events: str | None = None  # JSONL file; None: standard output
    webhook: str | None = None
    max_seconds: float | None = None  # wall clock
    name: str | None = None  # the stream's id in events; default: the URL
    vlm: str | None = None  # a VLM folder or hub id instead of RUN/finetune/final
    device: str = "cpu"
    batch_size: int = 8
    max_new_tokens: int = 24


class ConsoleSink:
    """One line per event opening and closing, on ``out`` (standard error): what an operator watches."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out

    def emit(self, kind: EventKind, event: Event) -> None:
        if kind == "open":
            text = (f"event {event.event_id} opened at {event.start_s:.1f} s ({event.start_time}): score "
                    f"{event.score:.3f}, {event.category or 'no category'}")
        else:
            judged = (f"VLM {event.vlm_score:.2f}: {event.explanation!r}" if event.vlm_score is not None
                      else f"no VLM ({event.vlm_skipped})" if event.vlm_skipped else "no VLM")
            text = (f"event {event.event_id} closed: {event.start_s:.1f}-{event.end_s:.1f} s, score "
                    f"{event.score:.3f}, {judged}")
        print(f"dualvad watch: {text}", file=self.out, flush=True)

    def close(self) -> None:
        pass


def watch(request: WatchRequest, config: StreamConfig) -> dict[str, Any]:
    """Follow ``request.url`` (module docstring); returns the detector's final status.

    Raises:
        ValueError: the URL's scheme is not one a live source reads, or the events file is not one.
        MissingInputError: the run lacks what the detector needs (the message names the stage to run).
    """
    from dualvad.detector import FrameJudge, SegmentAnalyzer
    from dualvad.stream.detector import StreamDetector
    from dualvad.stream.source import LiveSource

    source = LiveSource.from_config(request.url, config)
    sinks = _sinks(request, config)
    try:
        analyzer = SegmentAnalyzer.from_run(request.run)
        judge = None
        if config.vlm:
            frame_judge = FrameJudge.from_run(request.run, request.vlm, request.device, request.batch_size,
                                              request.max_new_tokens)
            judge = frame_judge.judge
        detector = StreamDetector(analyzer, config, request.name or request.url, request.name or request.url,
                                  judge, sinks)
        with _stopped_by_signals(detector.stop):
            detector.run(source, request.max_seconds)
        return detector.status()
    finally:
        source.stop()
        for sink in sinks:
            sink.close()


def _sinks(request: WatchRequest, config: StreamConfig) -> list[EventSink]:
    sinks: list[EventSink] = [ConsoleSink(sys.stderr)]
    sinks.append(JsonlSink(request.events or "-"))
    if request.webhook:
        sinks.append(WebhookSink(request.webhook, config.webhook_queue, config.webhook_retries,
                                 config.webhook_backoff_s, config.webhook_timeout_s))
    return sinks


@contextmanager
def _stopped_by_signals(stop: Any) -> Iterator[None]:
    """SIGINT and SIGTERM call ``stop`` (the detector then closes its open event) instead of killing."""
    previous = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    for number in previous:
        signal.signal(number, lambda *_: stop())
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
