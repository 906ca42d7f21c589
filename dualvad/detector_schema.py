"""The detector's options and result (pydantic), one definition for ``dualvad detect`` and the HTTP API.

:class:`DetectOptions` is what a caller may change per video (the CLI's flags, the endpoint's option
fields, a Python caller's keywords); :class:`DetectionResult` is one video's answer, a line of ``dualvad
detect``'s JSON Lines and the body of ``POST /v1/detect`` (which adds its request id and thumbnails,
:mod:`dualvad.serve.schemas`). Every model forbids unknown fields, so the served OpenAPI schema and the
tests that validate responses against it cannot drift from what is sent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from dualvad.eval.scoring import SERVING_THRESHOLD
from dualvad.validation import FORBID_EXTRA
from dualvad.video.sampling import STRATEGIES

INVALID = "invalid_option"  # the pydantic error type of the options' own checks


class Strict(BaseModel):
    # lax types (form fields arrive as strings), unknown fields refused as everywhere (dualvad.validation)
    model_config = FORBID_EXTRA


class InvalidOptionsError(ValueError):
    """Options that do not validate; the message names each bad option and what it accepts."""


def _checked(handler: Any, value: Any, valid: Callable[[Any], bool], requirement: str,
             numeric: bool = True) -> Any:
    """``handler(value)`` (pydantic's parsing: form fields arrive as strings) when it parses and is
    ``valid`` (``None``, an optional option's default, is); else the option's own message, ``requirement``
    and the value. A bool is not a number here, though pydantic would read True as 1."""
    if not (numeric and isinstance(value, bool)):
        try:
            parsed = handler(value)
        except ValidationError:
            pass
        else:
            if parsed is None or valid(parsed):
                return parsed
    # no context given: the message is used as it is, braces in the value included
    raise PydanticCustomError(INVALID, f"{requirement}, got {value!r}")


class DetectOptions(Strict):
    """Per-request options; ``None`` takes the run's recorded ``sample.*`` setting.

    Strings are parsed as pydantic does (``"4"``, ``"true"``: form fields); a bad value raises
    :class:`InvalidOptionsError` (a ValueError) naming the option and its valid values.
    """

    model_config = ConfigDict(FORBID_EXTRA, frozen=True)

    budget: int | None = Field(None, description="frames the VLM sees (>= 1); default: the run's "
                                                  "sample.budget")
    strategy: str | None = Field(None, description=f"frame allocation: {', '.join(STRATEGIES)}; "
                                                   "default: the run's sample.strategy")
    tau: float | None = Field(None, description="softmax temperature of focused allocation (> 0); default: "
                                                "the run's sample.tau")
    threshold: float = Field(SERVING_THRESHOLD,
                             description="video_score at or above which is_anomalous is true, in [0, 1]")
    explain: bool = Field(True, description="generate an explanation for every clip (false: \"\" and a "
                                            "one-turn score)")

    def __init__(self, /, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as error:
            raise InvalidOptionsError(describe(error)) from None

    @field_validator("budget", mode="wrap")
    @classmethod
    def _budget(cls, value: Any, handler: Any) -> int | None:
        return _checked(handler, value, lambda budget: budget >= 1,
                        "budget must be an integer >= 1 (or None: the run's sample.budget)")

    @field_validator("strategy", mode="wrap")
    @classmethod
    def _strategy(cls, value: Any, handler: Any) -> str | None:
        return _checked(handler, value, lambda strategy: strategy in STRATEGIES,
                        f"strategy must be one of {', '.join(STRATEGIES)} (or None: the run's "
                        "sample.strategy)",
                        numeric=False)

    @field_validator("tau", mode="wrap")
    @classmethod
    def _tau(cls, value: Any, handler: Any) -> float | None:
        return _checked(handler, value, lambda tau: tau > 0,  # NaN is refused too
                        "tau must be a number > 0 (or None: the run's sample.tau)")

    @field_validator("threshold", mode="wrap")
    @classmethod
    def _threshold(cls, value: Any, handler: Any) -> float:
        return _checked(handler, value, lambda threshold: 0.0 <= threshold <= 1.0,
                        "threshold must be a number in [0, 1]")

    @field_validator("explain", mode="wrap")
    @classmethod
    def _explain(cls, value: Any, handler: Any) -> bool:
        return _checked(handler, value, lambda _: True, "explain must be true or false", numeric=False)


DEFAULT_OPTIONS = DetectOptions()  # every option at its default (a frozen model: safe to share)


def describe(error: ValidationError) -> str:
    """One line per problem, joined by "; ": the options' own messages as they are (they name the option),
    pydantic's prefixed with the field (``thumbnails: Input should be ...``)."""
    return "; ".join(problem["msg"] if problem["type"] == INVALID
                     else f"{'.'.join(map(str, problem['loc'])) or 'body'}: {problem['msg']}"
                     for problem in error.errors())


class VideoOut(Strict):
    frames: int
    fps: float  # as the container reports
    duration_s: float  # frames / fps


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
    end_s: float  # after the clip's last sampled frame
    score: float = Field(description="the VLM's expected abnormality score, 0-10")
    explanation: str


class DetectionResult(Strict):
    """One video's detection; seconds are frame index / fps."""

    video: VideoOut
    video_score: float
    is_anomalous: bool
    category: str | None = Field(description="from the scorer's category head when the video is anomalous; "
                                             "null when it is not, or the scorer has no such head")
    segments: list[SegmentOut]
    frames: list[FrameOut]
    clips: list[ClipOut]
    timings_ms: dict[str, float]
    models: dict[str, str | None] = Field(description='the run and the VLM: {"run": ..., "vlm": ...}')
