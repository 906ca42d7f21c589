"""A stream's events and where they go: JSON Lines files, webhooks, and in-process subscribers (serve's SSE).

An event is an anomaly the stream detector saw: it opens when the smoothed scorer score crosses the alert
threshold and closes after it stays below the release threshold for the hold time
(:mod:`dualvad.stream.detector`). Each sink receives it twice, as ``"open"`` (the alert: the scorer alone,
as soon as the threshold is crossed) and as ``"close"`` (final: end, peak, the VLM's score and explanation).

Event ids are deterministic: a hash of the stream's key and the event's first segment on the source's own
clock (:func:`event_id`), so a watcher restarted on the same stream gives an event it already reported the
same id, and :class:`JsonlSink` (which reads the ids already in its file) never writes it twice; a webhook
receiver can deduplicate on the id the same way.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import queue
import sys
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import IO, Any, Literal, Protocol

log = logging.getLogger(__name__)

EventKind = Literal["open", "close"]


@dataclass
class Event:
    """One anomaly on one stream. Times: ``*_s`` are stream seconds (since the watcher started reading),
    ``*_time`` wall clock (ISO 8601 with time zone) when the event's first and last frames arrived."""

    stream_id: str
    event_id: str
    start_s: float
    end_s: float  # the newest frame so far while open
    start_time: str
    end_time: str
    score: float  # the verdict on the peak scorer score and the VLM's score (the scorer's alone without one)
    peak_scorer_score: float  # the highest smoothed scorer score in the event, in [0, 1]
    category: str | None  # the scorer's category head at the peak (None: a scorer without a head)
    category_probability: float | None
    vlm_score: float | None = None  # the VLM's best clip score / 10; None: not judged (budget, vlm off)
    explanation: str = ""  # the VLM's explanation of its best clip; "" when not judged
    vlm_skipped: str = ""  # why the VLM did not judge the event, when it did not
    state: Literal["open", "closed"] = "open"
    thumbnail_jpeg: str = ""  # base64 JPEG of the peak frame, thumbnail_width px wide
    frames_judged: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def event_id(stream_key: str, first_segment: int) -> str:
    """The id of the event whose first segment is number ``first_segment`` of ``stream_key``'s segment grid
    (segments counted on the source's clock): 16 hex characters, the same on every run."""
    return hashlib.sha256(f"{stream_key}|{first_segment}".encode()).hexdigest()[:16]


def iso_time(epoch_s: float) -> str:
    """``epoch_s`` (seconds since 1970, UTC) as ISO 8601 with the local time zone, milliseconds."""
    return datetime.fromtimestamp(epoch_s, tz=UTC).astimezone().isoformat(timespec="milliseconds")


class EventSink(Protocol):
    """Where a stream's events go. ``emit`` must return at once: analysis calls it inline."""

    def emit(self, kind: EventKind, event: Event) -> None: ...

    def close(self) -> None: ...


class JsonlSink:
    """Closed events as JSON Lines (one event per line, flushed), each id written once: ids already in the
    file (a previous watcher's) are read at open and skipped. ``path`` ``"-"``: standard output."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        if path == "-":
            self.written: set[str] = set()
            self._file: IO[str] = sys.stdout
            return
        self.written = _ids_in(path)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed by close()

    def emit(self, kind: EventKind, event: Event) -> None:
        if kind != "close":
            return
        with self._lock:
            if event.event_id in self.written:
                return
            self._file.write(json.dumps(event.to_dict()) + "\n")
            self._file.flush()
            self.written.add(event.event_id)

    def close(self) -> None:
        with self._lock:
            if self._file is sys.stdout:
                self._file.flush()
            else:
                self._file.close()


def _ids_in(path: str) -> set[str]:
    """The event ids of an events file (empty when it does not exist yet).

    Raises:
        ValueError: a line that is not an event (the file is not an events file: name another one).
    """
    if not os.path.exists(path):
        return set()
    ids = set()
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                ids.add(json.loads(line)["event_id"])
            except (ValueError, KeyError, TypeError) as error:
                raise ValueError(f"{path}:{number} is not an event line ({error}): pass --events a new file "
                                 "or one a watcher wrote") from None
    return ids


@dataclass
class WebhookStats:
    sent: int = 0
    failed: int = 0  # gave up after every retry
    dropped: int = 0  # the queue was full
    retries: int = 0


Poster = Callable[[str, dict[str, Any], float], int]  # (url, JSON body, timeout s) -> HTTP status


class WebhookSink:
    """POSTs ``{"type": "open"|"close", "event": {...}}`` as JSON to ``url`` from its own thread.

    A bounded queue (``capacity``) sits between analysis and delivery: ``emit`` never waits, and when the
    queue is full the event is dropped and counted (:attr:`stats`), so a slow or dead webhook never slows
    analysis. A failed POST (an error or a status >= 400) is retried ``retries`` times, waiting ``backoff_s``,
    then twice that, and so on; then counted as failed.
    """

    def __init__(self, url: str, capacity: int = 256, retries: int = 5, backoff_s: float = 0.5,
                 timeout_s: float = 5.0, post: Poster | None = None) -> None:
        self.url, self.retries, self.backoff_s, self.timeout_s = url, retries, backoff_s, timeout_s
        self.stats = WebhookStats()
        self._post = post or _httpx_post
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=capacity)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._deliver, name="dualvad-webhook", daemon=True)
        self._thread.start()

    def emit(self, kind: EventKind, event: Event) -> None:
        try:
            self._queue.put_nowait({"type": kind, "event": event.to_dict()})
        except queue.Full:
            self.stats.dropped += 1

    def close(self, timeout_s: float = 10.0) -> None:
        """Deliver what is queued (within ``timeout_s``), then stop the thread."""
        with contextlib.suppress(queue.Full):  # still full after timeout_s: the daemon thread is left behind
            self._queue.put(None, timeout=timeout_s)
        self._thread.join(timeout_s)
        self._stopping.set()

    def _deliver(self) -> None:
        while True:
            body = self._queue.get()
            if body is None:
                return
            self._send(body)

    def _send(self, body: dict[str, Any]) -> None:
        wait = self.backoff_s
        for attempt in range(self.retries + 1):
            try:
                status = self._post(self.url, body, self.timeout_s)
                if status < 400:
                    self.stats.sent += 1
                    return
                problem = f"HTTP {status}"
            except Exception as error:  # noqa: BLE001 - any transport error is retried, then counted
                problem = f"{type(error).__name__}: {error}"
            if attempt < self.retries:
                self.stats.retries += 1
                if self._stopping.wait(wait):
                    break
                wait *= 2
        self.stats.failed += 1
        log.warning("webhook %s: gave up on event %s (%s)", self.url, body["event"]["event_id"], problem)


def _httpx_post(url: str, body: dict[str, Any], timeout_s: float) -> int:
    import httpx

    return httpx.post(url, json=body, timeout=timeout_s).status_code


class Subscribers:
    """In-process fan-out of a stream's events (serve's SSE endpoint): each subscriber gets its own bounded
    queue; a subscriber that does not keep up loses its oldest events (counted in ``dropped``), never
    slowing analysis."""

    def __init__(self, capacity: int = 256) -> None:
        self.capacity, self.dropped = capacity, 0
        self._queues: list[queue.Queue[tuple[EventKind, dict[str, Any]]]] = []
        self._lock = threading.Lock()

    def subscribe(self) -> queue.Queue[tuple[EventKind, dict[str, Any]]]:
        subscriber: queue.Queue[tuple[EventKind, dict[str, Any]]] = queue.Queue(maxsize=self.capacity)
        with self._lock:
            self._queues.append(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: queue.Queue) -> None:
        with self._lock:
            if subscriber in self._queues:
                self._queues.remove(subscriber)

    def emit(self, kind: EventKind, event: Event) -> None:
        message = (kind, event.to_dict())
        with self._lock:
            for subscriber in self._queues:
                while True:
                    try:
                        subscriber.put_nowait(message)
                        break
                    except queue.Full:
                        try:
                            subscriber.get_nowait()
                            self.dropped += 1
                        except queue.Empty:
                            pass

    def close(self) -> None:
        with self._lock:
            self._queues.clear()
