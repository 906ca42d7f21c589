"""The HTTP API's request options and response bodies (pydantic): they are the OpenAPI schema at ``/docs``,
and the tests validate every response against them (``extra="forbid"``), so the schema cannot drift."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from dualvad.eval.scoring import SERVING_THRESHOLD

OPTION_FIELDS = ("budget", "strategy", "tau", "threshold", "explain", "thumbnails")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DetectRequestOptions(Strict):
    """Options of ``POST /v1/detect`` (form fields beside ``file``, or keys beside ``uri`` in JSON)."""

    budget: int | None = Field(None, description="frames the VLM sees; default: the run's sample.budget")
    strategy: str | None = Field(None, description="frame allocation: focused, uniform, random or cdf")
    tau: float | None = Field(None, description="softmax temperature of focused allocation")
    threshold: float = Field(SERVING_THRESHOLD,
                             description="video_score at or above which is_anomalous is true")
    explain: bool = Field(True, description="generate an explanation for every clip")
    thumbnails: int = Field(0, ge=0, le=64, description="JPEGs of this many highest-P(Yes) frames to return")


class UriRequest(DetectRequestOptions):
    """JSON body of ``POST /v1/detect``: a file under one of the server's allowed roots."""

    uri: str = Field(description="local path or pyarrow URI (s3://...) under an allowed root")


class VideoOut(Strict):
    frames: int
    fps: float
    duration_s: float


class SegmentOut(Strict):
    index: int
    start_frame: int
    end_frame: int  # exclusive
    start_s: float
    end_s: float
    score: float = Field(description="the segment's score from the VLM's frame P(Yes), as evaluate computes "
                                     "it (mean of its sampled frames, interpolated where it has none)")
    scorer_score: float = Field(description="the segment scorer's anomaly score of the segment, in [0, 1]")


class FrameOut(Strict):
    index: int
    seconds: float
    p_yes: float = Field(description='the VLM\'s P("Yes") that the frame shows an anomaly')


class ClipOut(Strict):
    start_s: float
    end_s: float
    score: float = Field(description="the VLM's expected abnormality score, 0-10")
    explanation: str


class ThumbnailOut(Strict):
    index: int
    p_yes: float
    jpeg_base64: str


class DetectResponse(Strict):
    """``200`` body of ``POST /v1/detect``."""

    request_id: str
    video: VideoOut
    video_score: float
    is_anomalous: bool
    category: str | None = Field(description="from the scorer's category head; null when it has none")
    segments: list[SegmentOut]
    frames: list[FrameOut]
    clips: list[ClipOut]
    thumbnails: list[ThumbnailOut] = Field(default_factory=list)
    timings_ms: dict[str, float]
    models: dict[str, str | None]


class ErrorDetail(Strict):
    code: str
    message: str


class ErrorResponse(Strict):
    """Every error: 400, 403, 404, 413, 415, 422, 500, 503 (with Retry-After), 504."""

    request_id: str
    error: ErrorDetail
