"""The HTTP API's request and response bodies (pydantic): they are the OpenAPI schema at ``/docs``, and the
tests validate every response against them (``extra="forbid"``), so the schema cannot drift.

The detection itself, its options and its answer, is :mod:`dualvad.detector_schema`'s (``dualvad detect``
writes the same); the HTTP API adds a request id and thumbnails.
"""

from __future__ import annotations

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
