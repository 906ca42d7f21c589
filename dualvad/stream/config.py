"""The stream settings (``stream.*``): how ``dualvad watch`` and serve's streams follow a live source.

Read by :mod:`dualvad.stream.source` (reading, reconnecting, dropping), :mod:`dualvad.stream.detector`
(segments, alerts, the VLM budget) and :mod:`dualvad.stream.events` (delivery). Where a key is ``None`` the
run decides: the segment span, the window and the alert threshold follow what the run was trained and
evaluated with.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from dualvad.validation import config_section


@config_section
class StreamConfig:
    """Following a live source: analysis rate, segments, alerts with hysteresis, the VLM budget, delivery."""

    # frames analysed per second of stream (every frame is decoded)
    analysis_fps: Annotated[float, Field(gt=0)] = 10.0
    # seconds of stream per segment; None = the run's median segment span (RUN/segments),
    # at least min_segment_s
    segment_s: Annotated[float, Field(gt=0)] | None = None
    # a run of short videos has spans too short to analyse live
    min_segment_s: Annotated[float, Field(gt=0)] = 0.5
    # recent segments scored together; None = the run's K
    window_segments: Annotated[int, Field(ge=2)] | None = None
    # the usual scene the cues are relative to: the newest segments outside events (background, median
    # segment); None = 4 windows; 0 = the window itself, as a video's cues are relative to the video
    reference_segments: Annotated[int, Field(ge=0)] | None = None
    # segments a window must hold before alerts (None: a full window): the window-relative cues compare with
    # the window's background and median, which a few segments do not give reliably
    warmup_segments: Annotated[int, Field(ge=1)] | None = None
    smoothing: Annotated[int, Field(ge=1)] = 2  # newest segment scores averaged into the alert score
    # the alert score that opens an event; None = the run's verdict threshold (RUN/eval/verdict.json)
    alert_threshold: Annotated[float, Field(gt=0, lt=1)] | None = None
    # the event closes below alert_threshold - release_gap
    release_gap: Annotated[float, Field(ge=0, lt=1)] = 0.1
    hold_s: Annotated[float, Field(ge=0)] = 2.0  # ... after staying there this long (stream seconds)
    # an event still open this long is closed and a new one opens
    max_event_s: Annotated[float, Field(gt=0)] = 300.0
    vlm: bool = True  # judge each event's frames with the run's VLM (False: the scorer alone)
    # per stream; an event over budget gets no VLM score
    vlm_calls_per_minute: Annotated[float, Field(gt=0)] = 2.0
    # frames judged per event; None = the run's sample.budget
    vlm_budget: Annotated[int, Field(ge=1)] | None = None
    thumbnail_width: Annotated[int, Field(ge=16)] = 160  # px, the JPEG thumbnail each event carries
    # analysed frames waiting for analysis; beyond: the oldest is dropped
    queue_frames: Annotated[int, Field(ge=1)] = 4
    stall_timeout_s: Annotated[float, Field(gt=0)] = 5.0  # no frame for this long: the source is reopened
    # first wait before reopening; doubles per failure
    reconnect_initial_s: Annotated[float, Field(gt=0)] = 0.5
    reconnect_max_s: Annotated[float, Field(gt=0)] = 10.0
    # events waiting for the webhook; beyond: dropped, counted
    webhook_queue: Annotated[int, Field(ge=1)] = 256
    webhook_retries: Annotated[int, Field(ge=0)] = 5  # tries after the first, with doubling backoff
    webhook_backoff_s: Annotated[float, Field(gt=0)] = 0.5
    webhook_timeout_s: Annotated[float, Field(gt=0)] = 5.0
