"""Serve's live streams, the parts without Ray: which stream URLs the app accepts, and the table of wanted
streams that outlives every Streams replica.

- :func:`check_stream_url` runs in the Api before any work reaches a replica: a URL whose scheme or host the
  app's settings do not allow is refused (403) with a message naming the scheme or host and the setting to
  change; one that is not a URL at all is 422.
- :class:`StreamTable` is the state of :class:`dualvad.serve.streams.StreamRegistry` (a named detached
  actor): which streams are wanted, which replica holds each (and when it last said so), each stream's
  latest status, its events (deduplicated by their deterministic ids) and its timeline. A replica that stops
  reporting for ``orphan_s`` loses its streams to whichever replica reports next with room for them.

Times: ``*_s`` of a stream are seconds since the stream was added (the registry shifts each adoption's
stream seconds by when that adoption started); wall times are ``time.time()`` seconds.
"""

from __future__ import annotations

import ipaddress
import itertools
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from dualvad.serve.errors import ServeError

DEFAULT_SCHEMES = ("rtsp", "rtsps", "http", "https")
MAX_URL_CHARS = 2048
MAX_MESSAGES = 512  # SSE messages a stream keeps for late subscribers; older ones are dropped first
MAX_SEGMENTS = 3600  # timeline segments a stream keeps (an hour of 1-s segments)
ANY_HOST = "*"


# ------------------------------------------------------------------------------------------- URLs


def check_stream_url(url: str, schemes: Iterable[str], hosts: Iterable[str]) -> str:
    """``url`` (stripped) when its scheme is one of ``schemes`` and its host matches one of ``hosts``
    (:func:`host_allowed`).

    Raises:
        ServeError: 422 ``invalid_url`` when ``url`` is not a URL with a scheme and a host; 403
            ``forbidden_stream`` naming the scheme or host and the setting that would allow it.
    """
    url = url.strip()
    if not url or len(url) > MAX_URL_CHARS or any(ch in url for ch in "\0\r\n\t "):
        raise ServeError(422, "invalid_url", f"the stream URL must be 1 to {MAX_URL_CHARS} characters "
                                             "without spaces or control characters, like "
                                             "rtsp://camera.local/stream")
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").rstrip(".").lower()
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError as error:
        raise ServeError(422, "invalid_url", f"the stream URL cannot be parsed ({error})") from None
    scheme, allowed_schemes = parts.scheme.lower(), [s.lower() for s in schemes]
    if not scheme or not host:
        raise ServeError(422, "invalid_url", f"the stream URL needs a scheme and a host, like "
                                             f"rtsp://camera.local/stream; got {redacted(url)!r}")
    if scheme not in allowed_schemes:
        listed = ", ".join(allowed_schemes) or "none"
        raise ServeError(403, "forbidden_stream", f"stream URL scheme {scheme!r} is not allowed (allowed: "
                                                  f"{listed}): add it to the app's allowed_stream_schemes")
    allowed = list(hosts)
    if not host_allowed(host, allowed):
        listed = ", ".join(allowed) or "none"
        raise ServeError(403, "forbidden_stream", f"stream host {host!r} is not allowed (allowed: {listed}): "
                                                  f"start the server with `dualvad serve --allow-stream-host "
                                                  f"{host}` or add it to the app's allowed_stream_hosts")
    return url


def host_allowed(host: str, allowed: Iterable[str]) -> bool:
    """Whether ``host`` (a lower-case name or IP literal) matches an entry of ``allowed``: ``*`` (any host),
    an IP network (``10.0.0.0/8``: IP literals inside it; a name is never resolved, so DNS cannot move a
    name into a network), or a name or IP compared exactly (case-insensitive)."""
    address = _address(host)
    for entry in allowed:
        entry = entry.strip().rstrip(".").lower()
        if entry in (ANY_HOST, host):
            return True
        try:
            network = ipaddress.ip_network(entry, strict=False)
        except ValueError:
            continue  # a name: compared exactly above
        if address is not None and address.version == network.version and address in network:
            return True
    return False


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def redacted(url: str) -> str:
    """``url`` with the password of its user info (``rtsp://user:secret@cam/``) replaced by ``***``: the form
    every answer and log shows."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{netloc}"))


# ------------------------------------------------------------------------------------------- the table


class StreamLimitError(Exception):
    """The app holds its limit of streams (``max_streams``)."""


@dataclass
class Adoption:
    """What a replica needs to start following a stream it adopts."""

    stream_id: str
    url: str
    name: str
    offset_s: float  # stream seconds at which this adoption starts (added to the detector's own)


@dataclass
class StreamEntry:
    stream_id: str
    name: str
    url: str
    created: float  # wall time
    owner: str | None = None  # the replica that holds it
    owner_seen: float = 0.0  # wall time of the owner's last report
    adoptions: int = 0
    offset_s: float = 0.0  # the current adoption's start, stream seconds
    state: str = "pending"  # pending (no replica holds it) | the detector's state | failed
    error: str = ""
    status: dict[str, Any] = field(default_factory=dict)  # the detector's latest status
    events: dict[str, dict[str, Any]] = field(default_factory=dict)  # event id -> the event, latest kind
    messages: deque[tuple[int, str, dict[str, Any]]] = field(
        default_factory=lambda: deque(maxlen=MAX_MESSAGES))
    segments: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=MAX_SEGMENTS))
    gaps: list[list[float]] = field(default_factory=list)
    adoption_gaps: list[list[float]] = field(default_factory=list)  # time no replica held it, stream seconds
    duplicates: int = 0  # events (open or close) a replica reported again and the table dropped

    def summary(self) -> dict[str, Any]:
        """JSON-ready: what ``GET /v1/streams/{id}`` answers."""
        return {"stream_id": self.stream_id, "name": self.name, "url": redacted(self.url),
                "state": self.state, "error": self.error, "replica": self.owner, "adoptions": self.adoptions,
                "events": len(self.events), "duplicates_dropped": self.duplicates, "status": self.status}


class StreamTable:
    """The wanted streams and everything replicas reported about them (module docstring). Not thread-safe:
    its actor calls it from one event loop. ``clock``: wall time in seconds (a seam for tests)."""

    def __init__(self, orphan_s: float, clock: Callable[[], float]) -> None:
        self.orphan_s, self.clock = orphan_s, clock
        self.streams: dict[str, StreamEntry] = {}
        self._seq = itertools.count(1)

    # -------------------------------------------------------------------------------- the Api's side

    def add(self, url: str, name: str, limit: int) -> dict[str, Any]:
        """A new pending stream (the next replica report adopts it).

        Raises:
            StreamLimitError: ``limit`` streams are wanted already.
        """
        if len(self.streams) >= limit:
            raise StreamLimitError(f"the app follows its limit of {limit} streams: DELETE one, or raise the "
                                   "app's max_streams")
        stream_id = uuid.uuid4().hex[:12]
        self.streams[stream_id] = StreamEntry(stream_id, name, url, created=self.clock())
        return self.streams[stream_id].summary()

    def remove(self, stream_id: str) -> dict[str, Any] | None:
        """Forget ``stream_id`` (its replica stops it at its next report): its last summary, None if
        unknown."""
        entry = self.streams.pop(stream_id, None)
        if entry is None:
            return None
        entry.state = "deleted"
        return entry.summary()

    def get(self, stream_id: str) -> dict[str, Any] | None:
        entry = self.streams.get(stream_id)
        return None if entry is None else entry.summary()

    def list(self) -> list[dict[str, Any]]:
        return [entry.summary() for entry in self.streams.values()]

    def messages_after(self, stream_id: str, after: int) -> list[tuple[int, str, dict[str, Any]]]:
        """The stream's SSE messages ``(seq, kind, event)`` with a sequence number above ``after``."""
        entry = self.streams.get(stream_id)
        return [] if entry is None else [message for message in entry.messages if message[0] > after]

    def seq_of(self, stream_id: str, event_id: str) -> int:
        """The sequence number of the last message about ``event_id`` (an SSE client's ``Last-Event-ID``),
        0 when none is held."""
        entry = self.streams.get(stream_id)
        found = [seq for seq, _, event in (entry.messages if entry else ()) if event["event_id"] == event_id]
        return max(found, default=0)

    def timeline(self, stream_id: str, since_s: float) -> dict[str, Any] | None:
        """``segments`` [{start_s, end_s, score}], ``gaps`` [[start_s, end_s]] (the source's and the time no
        replica held the stream) and ``events`` (newest last) from stream second ``since_s``."""
        entry = self.streams.get(stream_id)
        if entry is None:
            return None
        events = sorted(entry.events.values(), key=lambda event: event["start_s"])
        return {"stream_id": stream_id, "now_s": self.clock() - entry.created,
                "segments": [s for s in entry.segments if s["end_s"] > since_s],
                "gaps": [g for g in entry.gaps + entry.adoption_gaps if g[1] > since_s],
                "events": [e for e in events if e["end_s"] > since_s]}

    # -------------------------------------------------------------------------------- the replicas' side

    def report(self, replica: str, statuses: dict[str, dict[str, Any]], capacity: int) -> dict[str, Any]:
        """A replica's report: the status of each stream it holds, and room for ``capacity`` streams in all.

        Returns ``{"stop": [ids it must stop: deleted, or re-adopted elsewhere while it was silent],
        "adopt": [Adoption of pending or orphaned streams, up to its room], "wanted": streams wanted}``.
        """
        now = self.clock()
        stop = []
        for stream_id, status in statuses.items():
            entry = self.streams.get(stream_id)
            if entry is None or entry.owner != replica:
                stop.append(stream_id)
                continue
            entry.owner_seen, entry.status = now, status
            entry.state = status.get("state", entry.state)
            if status.get("error"):
                entry.state, entry.error = "failed", status["error"]
        held = len(statuses) - len(stop)
        adopt = []
        for entry in self.streams.values():
            if held + len(adopt) >= capacity:
                break
            if entry.state != "failed" and self._orphaned(entry, now, replica, statuses):
                adopt.append(self._adopt(entry, replica, now))
        return {"stop": stop, "adopt": adopt, "wanted": len(self.streams)}

    def _orphaned(self, entry: StreamEntry, now: float, replica: str, statuses: dict[str, Any]) -> bool:
        """No replica holds ``entry``: never adopted, its owner silent for ``orphan_s``, or its owner (this
        replica, restarted under the same id) no longer reporting it."""
        if entry.owner is None:
            return True
        if entry.owner == replica:
            return entry.stream_id not in statuses
        return now - entry.owner_seen > self.orphan_s

    def _adopt(self, entry: StreamEntry, replica: str, now: float) -> Adoption:
        offset = now - entry.created
        if entry.adoptions:  # the time between the last report of the lost owner and now held no analysis
            entry.adoption_gaps.append([entry.owner_seen - entry.created, offset])
            self._close_dangling(entry)
        entry.owner, entry.owner_seen, entry.offset_s = replica, now, offset
        entry.adoptions += 1
        entry.state = "connecting"
        return Adoption(entry.stream_id, entry.url, entry.name, offset)

    def _close_dangling(self, entry: StreamEntry) -> None:
        """Events the lost owner opened but never closed are closed here (their last known end), so each is
        delivered closed exactly once; the new owner's reports of the same ids are duplicates."""
        for event in list(entry.events.values()):
            if event["state"] == "open":
                closed = {**event, "state": "closed",
                          "extra": {**event.get("extra", {}), "closed_by": "replica lost"}}
                self._deliver(entry, "close", closed)

    def record(self, stream_id: str, replica: str, kind: str, event: dict[str, Any]) -> bool:
        """One event a replica's detector emitted (``kind`` open or close, times in its own stream seconds).
        Returns whether it was new: an open for an id seen before, or a close for one already closed, is a
        duplicate (a replica re-reading the same moment of a stream) and dropped."""
        entry = self.streams.get(stream_id)
        if entry is None or entry.owner != replica:
            return False  # deleted, or the stream has a new owner: the old one's report comes too late
        seen = entry.events.get(event["event_id"])
        if (kind == "open" and seen is not None) or (seen is not None and seen["state"] == "closed"):
            entry.duplicates += 1
            return False
        offset = entry.offset_s
        shifted = {**event, "start_s": event["start_s"] + offset, "end_s": event["end_s"] + offset}
        self._deliver(entry, kind, shifted)
        return True

    def _deliver(self, entry: StreamEntry, kind: str, event: dict[str, Any]) -> None:
        entry.events[event["event_id"]] = event
        entry.messages.append((next(self._seq), kind, event))

    def add_timeline(self, stream_id: str, replica: str, timeline: dict[str, Any]) -> None:
        """A replica's timeline since its last one (its own stream seconds): new segments appended; a gap
        that starts where one held starts replaces it (a gap still open grows), others are appended."""
        entry = self.streams.get(stream_id)
        if entry is None or entry.owner != replica:
            return
        offset = entry.offset_s
        last = entry.segments[-1]["end_s"] if entry.segments else float("-inf")
        for segment in timeline.get("segments", []):
            start, end = segment["start_s"] + offset, segment["end_s"] + offset
            if start >= last - 1e-9:
                entry.segments.append({**segment, "start_s": start, "end_s": end})
                last = end
        for start, end in timeline.get("gaps", []):
            gap = [start + offset, end + offset]
            same = [held for held in entry.gaps if abs(held[0] - gap[0]) < 1e-6]
            if same:
                same[0][1] = gap[1]
            else:
                entry.gaps.append(gap)
