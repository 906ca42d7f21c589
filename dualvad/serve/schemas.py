"""The HTTP API's request and response bodies (pydantic): they are the OpenAPI schema at ``/docs``, and the
tests validate every response against them (``extra="forbid"``), so the schema cannot drift.

The detection itself, its options and its answer, is :mod:`dualvad.detector_schema`'s (``dualvad detect``
writes the same); the HTTP API adds a request id and thumbnails.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from dualvad.detector_schema import DetectionResult, DetectOptions, Strict


class DetectRequestOptions(DetectOptions):
    """Options of ``POST /v1/detect`` (form fields beside ``file``, or keys beside ``uri`` in JSON)."""

    thumbnails: int = Field(0, ge=0, le=64, description="JPEGs of this many highest-P(Yes) frames to return")

    def detect_options(self) -> DetectOptions:
        """The detector's options alone (without the HTTP API's own)."""
        return DetectOptions(**self.model_dump(include=set(DetectOptions.model_fields)))


OPTION_FIELDS = tuple(DetectRequestOptions.model_fields)


class UriRequest(DetectRequestOptions):
    """JSON body of ``POST /v1/detect``: a file under one of the server's allowed roots."""

    uri: str = Field(description="local path or pyarrow URI (s3://...) under an allowed root")


class ThumbnailOut(Strict):
    index: int
    p_yes: float
    jpeg_base64: str


class DetectResponse(DetectionResult):
    """``200`` body of ``POST /v1/detect``: the detection, its request id and thumbnails."""

    request_id: str
    thumbnails: list[ThumbnailOut] = Field(default_factory=list)


class ErrorDetail(Strict):
    code: str
    message: str


class ErrorResponse(Strict):
    """Every error: 400, 403, 404, 413, 415, 422, 500, 503 (with Retry-After), 504."""

    request_id: str
    error: ErrorDetail


# ------------------------------------------------------------------------------------------- live streams


class StreamRequest(Strict):
    """Body of ``POST /v1/streams``: a live source whose scheme and host the app allows."""

    url: str = Field(description="rtsp://, rtsps://, or an HLS playlist http(s)://.../x.m3u8 (the schemes "
                                 "and hosts the app's allowed_stream_schemes and allowed_stream_hosts allow)")
    name: str = Field("", max_length=200, description="a label for lists and the page (default: the URL's "
                                                      "host and path)")


class StreamInfo(Strict):
    """One stream (``201`` of ``POST /v1/streams``, ``GET /v1/streams/{id}``, ``DELETE``'s last state)."""

    stream_id: str
    name: str
    url: str = Field(description="the URL, its password (if any) shown as ***")
    state: str = Field(description="pending (no replica holds it yet), connecting, live, reconnecting, "
                                   "ended, stopped, failed, deleted")
    error: str = Field(description="why the stream failed; empty otherwise")
    replica: str | None = Field(description="the Streams replica that follows it")
    adoptions: int = Field(description="times a replica started following it (more than 1: re-opened after a "
                                       "replica was lost)")
    events: int = Field(description="distinct events so far")
    duplicates_dropped: int = Field(description="events a re-opened stream reported again, dropped by id")
    status: dict[str, Any] = Field(description="the detector's latest status: lag behind live, fps in "
                                               "and analysed, drops, reconnects, VLM calls and skips, the "
                                               "source's stats (empty until a replica follows it)")


class StreamList(Strict):
    """``200`` of ``GET /v1/streams``."""

    streams: list[StreamInfo]


class StreamTimeline(Strict):
    """``200`` of ``GET /v1/streams/{id}/timeline``: seconds since the stream was added."""

    stream_id: str
    now_s: float = Field(description="the stream's age now")
    segments: list[dict[str, Any]] = Field(description="[{start_s, end_s, score, ...}] scored segments")
    gaps: list[list[float]] = Field(description="[[start_s, end_s]] with no analysis: the source gone or "
                                                "stalled, or no replica holding the stream")
    events: list[dict[str, Any]] = Field(description="the events (open and closed), by start")
