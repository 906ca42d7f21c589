"""Reading a live source with PyAV: :class:`LiveSource`.

A live source is an ``rtsp://`` (or ``rtsps://``) URL, read over TCP; an HLS playlist
(``http(s)://.../x.m3u8``, or any stream ffmpeg reads over HTTP); a file still being written (a local path or
``file://`` URL: MPEG-TS, Matroska or fragmented MP4, whose index is not at the end); or a local camera
device (``/dev/video0``, read with ffmpeg's ``v4l2``). A reader thread decodes **every** frame at the
source's rate and hands the analysed ones (``analysis_fps`` of them per second of **stream time**, picked
by their timestamps, each with the frame decoded right after it: the motion cues' pair) to the consumer
through a bounded queue of ``queue_frames``; when the consumer falls behind, the **oldest** waiting frame is
dropped and counted, so no backlog grows and memory stays flat (a finished file, read with
``follow=False``, has no live edge to keep up with: its reader waits for room instead).

Faults:

- **stall** (no frame for ``stall_timeout_s``): every ffmpeg read is bounded by PyAV's read timeout (its
  interrupt callback; also ffmpeg's own socket timeouts), so a dead socket never blocks for longer; the
  source is then reopened.
- **disappearance** (connection refused or reset, the stream ended by the server): reopened after
  ``reconnect_initial_s``, doubling per failed attempt up to ``reconnect_max_s`` (back to the initial wait
  once a connection delivered frames); ``max_reconnects`` failed attempts in a row end the source.
  ``stream_s`` stays monotonic across reconnections and each gap is recorded in :attr:`SourceStats.gaps`.
- **repeats**: an HLS source reopened rejoins its live playlist a few segments back; the frames it already
  delivered (by PTS) are skipped (``frames_repeated``), unless the PTS went back by more than 30 s (the
  publisher restarted).
- **corrupt data**: packets the demuxer flags corrupt, packets the decoder rejects and frames it marks
  corrupt are skipped and counted (:attr:`SourceStats.corrupt`); decoding goes on with the next one.
- **a resolution or frame-rate change**: frames just come at the new size (``width``/``height`` of the
  stats follow); analysed frames are picked on timestamps, so a new frame rate keeps the analysis rate.

How a source ends: a network source never ends by itself (a live camera has no end) except an HLS playlist
that says so (``#EXT-X-ENDLIST``) once its last segment is read; a file ends at its end with
``follow=False``, and with ``follow=True`` (the default: it may still be written) when it has not grown for
``stall_timeout_s``. :meth:`LiveSource.stop` ends :meth:`LiveSource.frames` at once, from any thread; the
reader thread exits after its current read, which the read timeout bounds by ``stall_timeout_s``.

``SourceFrame.source_s``, the source's own clock, by kind of source:

- HLS and MPEG-TS over HTTP: the stream's PTS (the publisher's clock, the same after a reconnection while
  the publisher runs; ffmpeg unwraps the 33-bit wrap within a connection).
- files: the file's PTS.
- RTSP: the sender's wall clock, from the RTCP sender reports ffmpeg reads (PyAV's
  ``container.start_time_realtime``, seconds since 1970): ``None`` until the first report arrives (about a
  second into a connection); accurate to within the time between the connection's first RTP packet and its
  first sender report, which PyAV does not expose (ffmpeg keeps the report's RTP timestamp to itself).
- devices: ``None`` (V4L2 timestamps are the machine's monotonic clock, not the camera's).
"""

from __future__ import annotations

import collections
import logging
import math
import os
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import av

from dualvad.stream.config import StreamConfig

log = logging.getLogger(__name__)

#: The URL schemes a live source may have (besides a local path, which has none).
SCHEMES = ("rtsp", "rtsps", "http", "https", "file")
SourceKind = Literal["rtsp", "http", "file", "device"]

_POLL_S = 0.02  # how often a followed file is checked for new bytes at its end
_FPS_WINDOW = 30  # decoded frames whose arrival times give fps_in
_DEFAULT_FRAME_S = 1 / 30  # a frame's duration when the stream does not say
_RTSP_PROBE_US = "200000"  # µs of an RTSP stream ffmpeg reads before it starts (docs/decisions.md)
# An HLS reconnection rejoins the playlist 3 segments back (ffmpeg's live_start_index): the frames it repeats
# lie at most 3 target durations (seconds each, 10 at most in practice) before the newest one delivered
_REPLAY_WINDOW_S = 30.0


@dataclass
class SourceFrame:
    """One analysed frame of a live source and the frame decoded after it."""

    frame: Any  # av.VideoFrame as decoded (source size and pixel format)
    # av.VideoFrame: the next decoded frame (the motion cues' pair); ``frame`` itself at a stream's end
    next_frame: Any
    # analysed frames counted from 0 since the watcher started (across reconnections); the frames dropped
    # for a slow consumer keep their numbers, so the numbers handed over have holes where drops happened
    index: int
    # seconds of stream since the watcher started reading: the frame's timestamp since the connection's first
    # frame, plus the wall-clock seconds at which the connection's first frame arrived (monotonic across
    # reconnections and timestamp jumps)
    stream_s: float
    source_s: float | None  # the source's own clock (s), stable across reconnections where it has one
    wall_time: float  # time.time() when the frame was decoded


@dataclass
class SourceStats:
    """What a source reports (JSON-ready through ``dataclasses.asdict``)."""

    state: str = "connecting"  # connecting | live | reconnecting | ended | stopped
    frames_decoded: int = 0
    frames_analysed: int = 0  # handed to the consumer
    frames_dropped: int = 0  # analysed frames dropped because the consumer fell behind
    frames_repeated: int = 0  # decoded frames an HLS reconnection repeated, skipped (module docstring)
    corrupt: int = 0  # packets or frames the decoder rejected (skipped)
    reconnects: int = 0  # attempts to reopen the source after it was lost (successful or not)
    # (start, end) stream seconds with no frames: the source was gone or stalled
    gaps: list[tuple[float, float]] = field(default_factory=list)
    fps_in: float = 0.0  # decoded frames per second, over the last 30 frames' arrivals
    width: int = 0
    height: int = 0
    lag_s: float = 0.0  # wall-clock age of the newest analysed frame when it was taken
    queue_depth: int = 0  # analysed frames waiting for the consumer now
    queue_peak: int = 0  # the most that ever waited (never above queue_frames)
    error: str = ""  # why the source was last lost or failed to open ("" while none)


class LiveSource:
    """A live source read by a background thread (module docstring). Iterate :meth:`frames` (once);
    :meth:`stop` from any thread ends the iteration. Also a context manager that stops on exit.

    ``follow`` (files only): keep reading as the file grows (module docstring); a finished MP4
    (:func:`finished_mp4`) is always read to its end. ``open_timeout_s``: how
    long opening may take (probing included); None: ``max(stall_timeout_s, 10)``.

    Raises:
        ValueError: ``url`` has a scheme that is not one of :data:`SCHEMES`.
        FileNotFoundError: a local path or ``file://`` URL names no file.
    """

    def __init__(self, url: str, analysis_fps: float = 10.0, queue_frames: int = 4,
                 stall_timeout_s: float = 5.0, reconnect_initial_s: float = 0.5,
                 reconnect_max_s: float = 10.0, max_reconnects: int | None = None,
                 follow: bool = True, open_timeout_s: float | None = None) -> None:
        if analysis_fps <= 0 or queue_frames < 1 or stall_timeout_s <= 0 or reconnect_initial_s <= 0:
            raise ValueError("analysis_fps, stall_timeout_s and reconnect_initial_s must be > 0 and "
                             f"queue_frames >= 1 (got {analysis_fps}, {stall_timeout_s}, "
                             f"{reconnect_initial_s}, {queue_frames})")
        self.url = url
        self.kind, self._target = source_kind(url)
        self.analysis_fps, self.queue_frames = analysis_fps, queue_frames
        self.stall_timeout_s, self.max_reconnects = stall_timeout_s, max_reconnects
        # a finished MP4 cannot be growing (its index is written last): read to its end, as follow=False
        self.follow = follow and not (self.kind == "file" and finished_mp4(self._target))
        self.reconnect_initial_s = reconnect_initial_s
        self.reconnect_max_s = max(reconnect_max_s, reconnect_initial_s)
        self.open_timeout_s = open_timeout_s if open_timeout_s is not None else max(stall_timeout_s, 10.0)
        self._stats = SourceStats()
        self._lock = threading.Condition()  # guards _stats, _queue, _finished, _error
        self._queue: collections.deque[SourceFrame] = collections.deque()
        self._finished = False  # the reader thread is done: what is queued is all that will come
        self._error: BaseException | None = None  # a bug in the reader, raised to the consumer
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._started_at = 0.0  # time.monotonic() when reading began: stream second 0
        self._clock = _StreamClock()
        self._picks = _Picker(1.0 / analysis_fps)
        self._arrivals: collections.deque[float] = collections.deque(maxlen=_FPS_WINDOW)
        self._last_source_s: float | None = None  # the newest frame's PTS (HLS repeats, reader thread)

    @classmethod
    def from_config(cls, url: str, config: StreamConfig, **options: Any) -> LiveSource:
        """A source with the ``stream.*`` settings (analysis rate, queue, stall timeout, backoff);
        ``options``: the other parameters (``follow``, ``max_reconnects``, ``open_timeout_s``)."""
        return cls(url, analysis_fps=config.analysis_fps, queue_frames=config.queue_frames,
                   stall_timeout_s=config.stall_timeout_s, reconnect_initial_s=config.reconnect_initial_s,
                   reconnect_max_s=config.reconnect_max_s, **options)

    # -- the consumer's side ------------------------------------------------------------------------

    def start(self) -> None:
        """Start the reader thread (:meth:`frames` does it when needed)."""
        with self._lock:
            if self._thread is not None:
                return
            self._started_at = time.monotonic()
            self._thread = threading.Thread(target=self._read_forever, name=f"dualvad-source {self.url}",
                                            daemon=True)
            self._thread.start()

    def frames(self) -> Iterator[SourceFrame]:
        """The analysed frames, oldest first, as they come; ends when the source ends or :meth:`stop` is
        called (leaving the loop early stops the source too).

        Raises:
            Exception: whatever unexpected error ended the reader thread (never a source's own faults,
                which are counted and survived).
        """
        self.start()
        try:
            while True:
                with self._lock:
                    while not self._queue and not self._finished and not self._stopping.is_set():
                        self._lock.wait()
                    if self._stopping.is_set() or not self._queue:
                        if self._error is not None:
                            raise self._error
                        return
                    item = self._queue.popleft()
                    self._lock.notify_all()  # a reader waiting for room (a finished file)
                    self._stats.queue_depth = len(self._queue)
                    self._stats.frames_analysed += 1
                    self._stats.lag_s = time.time() - item.wall_time
                yield item
        finally:
            self.stop(wait=False)

    @property
    def stats(self) -> SourceStats:
        """A copy of the source's figures now."""
        with self._lock:
            return replace(self._stats, gaps=list(self._stats.gaps))

    def stop(self, wait: bool = True) -> None:
        """End :meth:`frames` now (from any thread). With ``wait``, also wait for the reader thread to exit:
        at most ``max(stall_timeout_s, open_timeout_s)`` plus a second, the longest one read may block."""
        self._stopping.set()
        with self._lock:
            if self._stats.state not in ("ended",):
                self._stats.state = "stopped"
            self._lock.notify_all()
        thread = self._thread
        if wait and thread is not None and thread is not threading.current_thread():
            thread.join(max(self.stall_timeout_s, self.open_timeout_s) + 1.0)

    @property
    def reader_alive(self) -> bool:
        """Whether the reader thread is still running."""
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> LiveSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def backoff_s(self, failures: int) -> float:
        """Seconds to wait before reopening after ``failures`` (>= 1) losses in a row."""
        return min(self.reconnect_initial_s * 2 ** (failures - 1), self.reconnect_max_s)

    # -- the reader thread --------------------------------------------------------------------------

    def _read_forever(self) -> None:
        """Connect, read until the source ends, is lost or stops; reopen with backoff while it is lost."""
        failures = 0  # reopen attempts since the last connection that delivered frames
        try:
            while not self._stopping.is_set():
                outcome, delivered = self._connect_and_read()
                if outcome != "lost":
                    self._set_state(outcome)
                    return
                failures = 1 if delivered else failures + 1
                if self.max_reconnects is not None and failures > self.max_reconnects:
                    log.warning("%s: gave up after %d attempts to reopen", self.url, self.max_reconnects)
                    self._set_state("ended")
                    return
                self._set_state("reconnecting")
                if self._stopping.wait(self.backoff_s(failures)):
                    return
                with self._lock:
                    self._stats.reconnects += 1
        except BaseException as error:  # a bug, not a source fault: handed to the consumer to raise
            with self._lock:
                self._error = error
            raise
        finally:
            with self._lock:
                self._finished = True
                self._lock.notify_all()

    def _connect_and_read(self) -> tuple[str, bool]:
        """One connection: ``(outcome, delivered)``, outcome ``ended`` | ``stopped`` | ``lost``; delivered:
        whether it decoded any frame."""
        self._set_state("connecting")
        opened_s = time.monotonic() - self._started_at
        try:
            container = self._open()
        except (av.FFmpegError, OSError) as error:
            self._lost(f"open: {type(error).__name__}: {error}")
            return "lost", False
        reader = _Connection(self, container, opened_s)
        with container:
            outcome = reader.read()
        if outcome == "eof":
            ended = self.kind == "file" or (self.kind == "http" and _playlist_ended(self._target))
            if ended:
                return "ended", reader.frames > 0
            self._lost("the stream ended")
            return "lost", reader.frames > 0
        return outcome, reader.frames > 0

    def _open(self) -> Any:
        """The source opened with PyAV, every read bounded (module docstring)."""
        timeout = (self.open_timeout_s, self.stall_timeout_s)
        socket_us = str(int(self.stall_timeout_s * 1e6))
        if self.kind == "rtsp":
            # a short probe: ffmpeg's default 5 s (about 1 s in practice) delays the first frame by as much
            # and hands that second over at once; the SDP already says what the video is
            options = {"rtsp_transport": "tcp", "timeout": socket_us, "analyzeduration": _RTSP_PROBE_US}
            return av.open(self._target, options=options, timeout=timeout)
        if self.kind == "http":
            return av.open(self._target, options={"rw_timeout": socket_us}, timeout=timeout)
        if self.kind == "device":
            return av.open(self._target, format="v4l2", timeout=timeout)
        if not self.follow:
            return av.open(self._target, timeout=timeout)
        return av.open(_GrowingFile(self._target, self.stall_timeout_s, self._stopping), timeout=timeout)

    # -- called by _Connection on the reader thread -------------------------------------------------

    def _set_state(self, state: str) -> None:
        with self._lock:
            if self._stats.state != "stopped":
                self._stats.state = state

    def _lost(self, why: str) -> None:
        log.warning("%s: %s (reopening)", self.url, why)
        with self._lock:
            self._stats.error = why

    def _count_corrupt(self) -> None:
        with self._lock:
            self._stats.corrupt += 1

    def _decoded(self, frame: Any, frame_s: float | None, opened_s: float | None) -> tuple[float, float]:
        """Count a decoded frame (``opened_s``: the connection's start, on its first frame): ``(stream_s,
        wall_time)``."""
        wall, elapsed = time.time(), time.monotonic() - self._started_at
        self._arrivals.append(elapsed)
        stream_s, gap = self._clock.place(frame_s, elapsed, opened_s, self.stall_timeout_s)
        with self._lock:
            stats = self._stats
            stats.frames_decoded += 1
            stats.width, stats.height = frame.width, frame.height
            if len(self._arrivals) > 1 and self._arrivals[-1] > self._arrivals[0]:
                stats.fps_in = (len(self._arrivals) - 1) / (self._arrivals[-1] - self._arrivals[0])
            if gap is not None:
                stats.gaps.append(gap)
            if stats.state in ("connecting", "reconnecting"):
                stats.state = "live"
                stats.error = ""
        return stream_s, wall

    def _hand_over(self, item: SourceFrame) -> None:
        """Queue an analysed frame for the consumer; a full queue drops its oldest frame (counted), except
        for a finished file (``follow=False``), which has no live edge to fall behind: there the reader
        waits for room."""
        with self._lock:
            if self.kind == "file" and not self.follow:
                while len(self._queue) >= self.queue_frames and not self._stopping.is_set():
                    self._lock.wait()
            if len(self._queue) >= self.queue_frames:
                self._queue.popleft()
                self._stats.frames_dropped += 1
            self._queue.append(item)
            self._stats.queue_depth = len(self._queue)
            self._stats.queue_peak = max(self._stats.queue_peak, len(self._queue))
            self._lock.notify_all()


class _Connection:
    """Reading one opened container: decode every frame, pick the analysed ones, pair each with the next."""

    def __init__(self, source: LiveSource, container: Any, opened_s: float) -> None:
        self.source, self.container = source, container
        self.opened_s = opened_s  # seconds since reading began when this connection started opening
        self.frames = 0  # decoded on this connection (frames repeated from the last one not counted)
        self.pending: SourceFrame | None = None  # an analysed frame waiting for its pair
        # HLS: the newest PTS already delivered, while this connection may be repeating what came before it
        self.repeats_until = source._last_source_s if source.kind == "http" else None

    def read(self) -> str:
        """``eof`` | ``stopped`` | ``lost`` (stalled, or the connection failed)."""
        source = self.source
        if not self.container.streams.video:
            source._lost(f"no video stream in {source.url}")
            return "lost"
        stream = self.container.streams.video[0]
        # slice threads, not frame threads: frame threading holds frames back (latency), one per thread
        stream.codec_context.thread_type = "SLICE"
        last_frame_at = time.monotonic()
        try:
            for packet in self.container.demux(stream):
                if source._stopping.is_set():
                    return "stopped"
                if packet.is_corrupt:
                    source._count_corrupt()
                    continue
                for frame in self._decode(packet):
                    last_frame_at = time.monotonic()
                    self._take(frame)
                if time.monotonic() - last_frame_at > source.stall_timeout_s:
                    source._lost(f"stalled: packets but no frame for {source.stall_timeout_s} s")
                    return "lost"
        except (av.FFmpegError, OSError) as error:  # a read timed out (stall) or the connection failed
            source._lost(f"read: {type(error).__name__}: {error}")
            return "stopped" if source._stopping.is_set() else "lost"
        finally:
            self._flush_pending()
        return "stopped" if source._stopping.is_set() else "eof"

    def _decode(self, packet: Any) -> list[Any]:
        """The frames ``packet`` completes; a packet the decoder rejects and a frame it marks corrupt are
        skipped and counted."""
        try:
            frames = packet.decode()
        except av.FFmpegError:  # the decoder rejected it (InvalidDataError mostly)
            self.source._count_corrupt()
            return []
        good = []
        for frame in frames:
            if frame.is_corrupt:
                self.source._count_corrupt()
            else:
                good.append(frame)
        return good

    def _take(self, frame: Any) -> None:
        """Time-stamp a decoded frame, complete the waiting pair, and pick it for analysis when due."""
        source = self.source
        frame_s = float(frame.time) if frame.time is not None else None
        if self._repeated(frame_s):
            return
        opened_s = self.opened_s if self.frames == 0 else None
        self.frames += 1
        stream_s, wall = source._decoded(frame, frame_s, opened_s)
        if frame_s is not None:
            source._last_source_s = frame_s
        if self.pending is not None:
            self.pending.next_frame = frame
            source._hand_over(self.pending)
            self.pending = None
        index = source._picks.pick(stream_s)
        if index is not None:
            self.pending = SourceFrame(frame=frame, next_frame=frame, index=index, stream_s=stream_s,
                                       source_s=self._source_s(frame_s), wall_time=wall)

    def _repeated(self, frame_s: float | None) -> bool:
        """Whether a frame is one an HLS reconnection repeats (a live playlist is rejoined a few segments
        back): its PTS at or before the newest already delivered, by less than :data:`_REPLAY_WINDOW_S`
        (further back, the publisher restarted its clock: new frames). Counted in ``frames_repeated``."""
        if self.repeats_until is None or frame_s is None:
            return False
        if not self.repeats_until - _REPLAY_WINDOW_S < frame_s <= self.repeats_until:
            self.repeats_until = None  # past the repeats: every frame from here on is new
            return False
        with self.source._lock:
            self.source._stats.frames_repeated += 1
        return True

    def _source_s(self, frame_s: float | None) -> float | None:
        if frame_s is None or self.source.kind == "device":
            return None
        if self.source.kind != "rtsp":
            return frame_s
        realtime = self.container.start_time_realtime  # µs since 1970 at pts 0; None before the first SR
        return None if realtime is None else realtime / 1e6 + frame_s

    def _flush_pending(self) -> None:
        """The last analysed frame of a connection goes out with itself as its pair."""
        if self.pending is not None:
            self.source._hand_over(self.pending)
            self.pending = None


class _StreamClock:
    """Stream seconds: a frame's timestamp since its connection's first frame plus the watcher's seconds
    when that connection started opening; re-anchored (and the gap recorded) on a new connection, and on a
    timestamp that goes back or jumps ahead by more than the stall timeout (to the frame's arrival), so
    that the result never goes back. A frame without timestamp comes one frame after the previous one
    (RTSP's first frame has none), or at its arrival on a stream that has none at all."""

    def __init__(self) -> None:
        self.base_s: float | None = None  # stream_s - frame_s on this stretch
        self.last_s: float | None = None  # the previous frame's stream_s
        self.last_frame_s: float | None = None  # its timestamp (None: it had none, or a new connection)
        self.step_s = _DEFAULT_FRAME_S  # the latest frame spacing seen

    def place(self, frame_s: float | None, elapsed: float, opened_s: float | None,
              jump_s: float) -> tuple[float, tuple[float, float] | None]:
        """``(stream_s, gap)`` of a frame with timestamp ``frame_s`` (None: it has none) arriving ``elapsed``
        seconds after reading began; ``opened_s``: when its connection started opening, given on the
        connection's first frame only; ``gap`` (start, end) when the source was gone before it."""
        if opened_s is not None:  # a new connection: at its start, after the previous frame
            start = opened_s if self.last_s is None else max(opened_s, self.last_s + self.step_s)
            gap = None if self.last_s is None else (self.last_s, start)
            return self._anchor(frame_s, start), gap
        if frame_s is None and self.last_frame_s is not None:
            frame_s = self.last_frame_s + self.step_s
        if frame_s is None:  # no timestamps on this connection so far: the arrival stands in
            return self._anchor(None, max(elapsed, self.last_s + 1e-3)), None
        if self.last_frame_s is None:  # the connection's first timestamp: one frame after the previous
            return self._anchor(frame_s, self.last_s + self.step_s), None
        delta = frame_s - self.last_frame_s
        if 0 <= delta <= jump_s:
            if delta > 0:
                self.step_s = delta
            self.last_frame_s, self.last_s = frame_s, frame_s + self.base_s
            return self.last_s, None
        # the timestamps jumped: at the frame's arrival, after the previous frame
        start = max(elapsed, self.last_s + self.step_s)
        gap = (self.last_s, start) if start - self.last_s > 1.5 * self.step_s else None
        return self._anchor(frame_s, start), gap

    def _anchor(self, frame_s: float | None, stream_s: float) -> float:
        """Start a stretch: the frame with timestamp ``frame_s`` is at ``stream_s``."""
        self.last_frame_s, self.last_s = frame_s, stream_s
        self.base_s = None if frame_s is None else stream_s - frame_s
        return stream_s


class _Picker:
    """Picks analysed frames at ``1 / step_s`` per second of stream time: the first frame at or after each
    tick of a grid anchored on the first frame."""

    def __init__(self, step_s: float) -> None:
        self.step_s = step_s
        self.next_s: float | None = None
        self.count = 0

    def pick(self, stream_s: float) -> int | None:
        """The analysed frame number of the frame at ``stream_s``, or None when it is not picked."""
        if self.next_s is not None and stream_s < self.next_s - 1e-9:
            return None
        if self.next_s is None:
            self.next_s = stream_s
        # the next tick after stream_s (ticks skipped by a gap are not made up)
        self.next_s += self.step_s * (math.floor((stream_s - self.next_s) / self.step_s + 1e-9) + 1)
        self.count += 1
        return self.count - 1


class _GrowingFile:
    """A file read as it grows: at its end, ``read`` waits for more bytes, and returns end-of-file only
    once the file has not grown for ``idle_s`` (or ``stopping`` is set). Not seekable, so ffmpeg never
    seeks to the end to estimate a duration (which would wait ``idle_s``)."""

    def __init__(self, path: str, idle_s: float, stopping: threading.Event) -> None:
        self._file = open(path, "rb")  # noqa: SIM115 - closed by close(), which PyAV calls
        self.idle_s, self.stopping = idle_s, stopping
        self.ended = False  # end-of-file was returned: it stays the end (the demuxer may read again)

    def read(self, size: int = -1) -> bytes:
        deadline = time.monotonic() + self.idle_s
        while not self.ended:
            data = self._file.read(size)
            if data:
                return data
            self.ended = self.stopping.is_set() or time.monotonic() >= deadline
            if not self.ended:
                self.stopping.wait(_POLL_S)
        return b""

    def close(self) -> None:
        self._file.close()


def finished_mp4(path: str) -> bool:
    """Whether ``path`` is a finished, non-fragmented MP4 (QuickTime) file: its top-level boxes hold the
    index (``moov``) and no fragment (``moof``). Such a file is not being written (its index comes last)
    and cannot be read as it grows (the index is needed first), so it is read as it is, to its end."""
    found = set()
    with open(path, "rb") as file:
        size_left = os.fstat(file.fileno()).st_size
        while size_left >= 8:
            header = file.read(8)
            size, kind = int.from_bytes(header[:4], "big"), header[4:8]
            if size == 1:  # a 64-bit size follows the type
                size = int.from_bytes(file.read(8), "big")
            elif size == 0:  # to the end of the file
                size = size_left
            if size < 8 or kind not in _MP4_BOXES:
                return False  # not an MP4 box: another container (TS, Matroska) or garbage
            found.add(kind)
            size_left -= size
            file.seek(size - (16 if header[:4] == b"\0\0\0\1" else 8), os.SEEK_CUR)
    return b"moov" in found and b"moof" not in found


#: Top-level MP4 box types (ISO/IEC 14496-12, QuickTime); anything else means another format.
_MP4_BOXES = {b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"moof", b"mfra", b"styp", b"sidx",
              b"uuid", b"meta", b"pdin", b"prft", b"emsg"}


def source_kind(url: str) -> tuple[SourceKind, str]:
    """What kind of live source ``url`` is and what PyAV opens: ``(kind, target)``.

    Raises:
        ValueError: a scheme not in :data:`SCHEMES`.
        FileNotFoundError: a local path or ``file://`` URL naming no file.
    """
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme in ("rtsp", "rtsps"):
        return "rtsp", url
    if scheme in ("http", "https"):
        return "http", url
    if scheme == "file":
        path = urllib.request.url2pathname(urllib.parse.urlsplit(url).path)
    elif scheme == "":
        path = url
    else:
        raise ValueError(f"live source {url!r}: scheme {scheme!r} is not supported; use one of "
                         f"{', '.join(s + '://' for s in SCHEMES)} or a local path")
    if not os.path.exists(path):
        raise FileNotFoundError(f"live source {url!r}: no such file or device {path!r}")
    if path.startswith("/dev/"):
        return "device", path
    return "file", path


def _playlist_ended(url: str) -> bool:
    """Whether ``url`` is an HLS playlist that says it has ended (``#EXT-X-ENDLIST``): a network source
    whose end is final. Any failure to tell counts as not ended (the source is reopened)."""
    import httpx

    if not urllib.parse.urlsplit(url).path.endswith(".m3u8"):
        return False  # an endless MPEG-TS over HTTP, say: never fetched whole
    try:
        response = httpx.get(url, timeout=5.0)
    except httpx.HTTPError as error:
        log.info("%s: cannot read the playlist to tell whether it ended (%s)", url, error)
        return False
    return response.status_code == 200 and "#EXT-X-ENDLIST" in response.text
