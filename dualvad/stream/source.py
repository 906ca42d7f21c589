"""Reading a live source with PyAV: :class:`LiveSource` (INTERFACE; implementation in progress, issue 31).

A live source is an ``rtsp://`` URL, an HLS playlist (``http(s)://.../x.m3u8``), a file still being written,
or a local camera device. A reader thread decodes **every** frame at the source's rate and hands the
analysed ones (``analysis_fps`` of them per second of stream, each with the frame decoded right after it:
the motion cues' pair) to the consumer through a bounded queue of ``queue_frames``; when the consumer falls
behind, the oldest waiting frame is dropped and counted, so no backlog grows and memory stays flat.
When the source disappears or stalls (no frame for ``stall_timeout_s``) it is reopened with backoff
(``reconnect_initial_s`` doubling up to ``reconnect_max_s``); the gap is recorded.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass
class SourceFrame:
    """One analysed frame of a live source and the frame decoded after it."""

    frame: Any  # av.VideoFrame as decoded (source size and pixel format)
    # av.VideoFrame: the next decoded frame (the motion cues' pair); ``frame`` itself at a stream's end
    next_frame: Any
    index: int  # analysed frames counted from 0 since the watcher started (across reconnections)
    # seconds of stream since the watcher started reading: the frame's timestamp since the connection's first
    # frame, plus the wall-clock seconds at which the connection began (monotonic across reconnections)
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
    corrupt: int = 0  # packets or frames the decoder rejected (skipped)
    reconnects: int = 0
    # (start, end) stream seconds with no frames: the source was gone or stalled
    gaps: list[tuple[float, float]] = field(default_factory=list)
    fps_in: float = 0.0  # decoded frames per second, recent
    width: int = 0
    height: int = 0
    lag_s: float = 0.0  # wall-clock age of the newest analysed frame when it was taken


class LiveSource:
    """A live source read by a background thread (module docstring). Iterate :meth:`frames`; :meth:`stop`
    from any thread ends the iteration."""

    def __init__(self, url: str, analysis_fps: float = 10.0, queue_frames: int = 4,
                 stall_timeout_s: float = 5.0, reconnect_initial_s: float = 0.5,
                 reconnect_max_s: float = 10.0, max_reconnects: int | None = None) -> None:
        raise NotImplementedError("issue 31: LiveSource is being written")

    def frames(self) -> Iterator[SourceFrame]:
        raise NotImplementedError

    @property
    def stats(self) -> SourceStats:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError
