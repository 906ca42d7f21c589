"""The stream detector (INTERFACE; implementation in progress, issue 31): a run's scorer following a live
source, opening and closing events with hysteresis, and spending a bounded VLM budget on each event.

Plain Python, beside the file :class:`dualvad.detector.Detector`, sharing its parts: the run's feature
extractor and scorer (:class:`dualvad.detector.SegmentAnalyzer`), the softmax allocation
(:func:`dualvad.video.sampling.allocate`) and the VLM judge (a callable taking JPEG bytes and returning a
:class:`dualvad.vlm.judge.Judgement`: :meth:`dualvad.detector.FrameJudge.judge` for ``dualvad watch``, the
Judge deployment's handle in serve).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dualvad.detector import SegmentAnalyzer
from dualvad.stream.config import StreamConfig
from dualvad.stream.events import Event, EventSink
from dualvad.stream.source import LiveSource
from dualvad.vlm.judge import Judgement

# JPEG bytes of an event's frames (time order) -> the VLM's answers
JudgeFn = Callable[[list[bytes]], Judgement]


class StreamDetector:
    """One stream followed by a run's scorer (module docstring).

    ``stream_id``: the name events and serve use; ``stream_key``: what event ids hash (the URL unless given).
    ``judge`` None, or ``config.vlm`` False: events carry the scorer's answer alone.
    """

    def __init__(self, analyzer: SegmentAnalyzer, config: StreamConfig, stream_id: str,
                 stream_key: str | None = None, judge: JudgeFn | None = None,
                 sinks: list[EventSink] | None = None) -> None:
        raise NotImplementedError("issue 31: StreamDetector is being written")

    def run(self, source: LiveSource, max_seconds: float | None = None) -> None:
        """Analyse ``source`` until it ends, :meth:`stop` is called, or ``max_seconds`` of stream passed;
        open events are then closed (and delivered)."""
        raise NotImplementedError

    def stop(self) -> None:
        """Ask :meth:`run` to finish (thread-safe, returns at once)."""
        raise NotImplementedError

    def status(self) -> dict[str, Any]:
        """JSON-ready: state, lag behind live (s), fps in and analysed, drops, reconnects, events (count),
        the open event, VLM calls and skips, the source's stats."""
        raise NotImplementedError

    def timeline(self, since_s: float = 0.0) -> dict[str, Any]:
        """JSON-ready recent history for a page: ``segments`` [{start_s, end_s, score}], ``gaps``
        [[start_s, end_s]], ``events`` (dicts, newest last), from stream second ``since_s``."""
        raise NotImplementedError

    @property
    def events(self) -> list[Event]:
        """The events seen so far (closed and open), oldest first."""
        raise NotImplementedError
