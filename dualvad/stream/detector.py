"""The stream detector: a run's scorer following a live source, opening and closing events with hysteresis,
and spending a bounded VLM budget on each event (plain Python).

It sits beside the file :class:`dualvad.detector.Detector` and shares its parts: the run's feature extractor,
scorer and verdict (:class:`dualvad.detector.SegmentAnalyzer`), the softmax allocation
(:func:`dualvad.video.sampling.allocate`, the run's ``sample.*``) and the VLM judge (a callable taking JPEG
bytes and returning a :class:`dualvad.vlm.judge.Judgement`: :meth:`dualvad.detector.FrameJudge.judge` for
``dualvad watch``, the Judge deployment in serve). What it adds is time:

1. **Segments.** Stream time is cut into segments of ``segment_s`` seconds (``stream.segment_s``, by default
   the run's median segment span) on the source's own clock where it has one (:class:`SourceFrame`'s
   ``source_s``), so a restarted watcher cuts the same segments. Each analysed frame and the frame decoded
   after it (a pair, as ingest decodes them) are scaled to the extractor's size through the same libavfilter
   graph as files (:class:`dualvad.video.gop.FrameScaler`); a closed segment's pairs (``frames_per_segment /
   2`` of them, evenly spread) give its per-segment part once (:meth:`segment_part`).
2. **Scores.** The newest ``window_segments`` segments (the run's K by default) are scored together, as a
   video of K segments is at training: the extractor's window step (the cues against the window's own
   background and median) and the scorer. The alert score is the verdict (:func:`dualvad.eval.verdict.apply`)
   on the mean of the newest ``smoothing`` segment scores, with the VLM's answer at its neutral 0.5: the
   verdict's probability when the VLM has not spoken.
3. **Events.** An event opens when the alert score reaches ``alert_threshold`` (the verdict's threshold by
   default) once the window holds ``warmup_segments``; it closes when the score has stayed below
   ``alert_threshold - release_gap`` for ``hold_s`` seconds of stream (hysteresis), when it has lasted
   ``max_event_s``, or when the stream ends. Sinks get it at once when it opens (the scorer's alert) and
   again when it closes (:mod:`dualvad.stream.events`).
4. **The VLM.** A closing event's frames are chosen by the run's allocation (``focused``: the softmax over its
   segments' scores) with a budget of ``vlm_budget`` frames, among the analysed frames kept as JPEG (about
   ``vlm_budget`` evenly spaced ones of each of the newest ``window_segments`` segments), and judged in a
   worker thread, so analysis never waits for the VLM; at most ``vlm_calls_per_minute`` per stream (a token
   bucket), an event over budget closes with the scorer's answer and the reason.
"""

from __future__ import annotations

import base64
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from dualvad import paths
from dualvad import schema as S
from dualvad.detector import SegmentAnalyzer
from dualvad.eval.scoring import video_score_from_clips
from dualvad.eval.verdict import apply
from dualvad.scorer.features import SegmentPart
from dualvad.stages.records import read_input
from dualvad.stream.config import StreamConfig
from dualvad.stream.events import Event, EventKind, EventSink, event_id, iso_time
from dualvad.stream.source import LiveSource, SourceFrame
from dualvad.video.gop import FrameScaler, frame_size
from dualvad.video.jpeg import encode_jpeg
from dualvad.video.sampling import allocate
from dualvad.vlm.judge import Judgement

# JPEG bytes of an event's frames (time order) -> the VLM's answers
JudgeFn = Callable[[list[bytes]], Judgement]
NEUTRAL_VLM = 0.5  # the VLM's score that moves the verdict neither way (logit 0): no answer yet
TIMELINE_SEGMENTS = 3600  # segments kept for status and the page's timeline
JUDGE_WAIT_S = 120.0  # how long the end of a stream waits for the VLM's pending judgements


@dataclass
class StreamSettings:
    """What the detector runs with: ``stream.*`` resolved against the run."""

    segment_s: float  # stream seconds per segment
    window: int  # segments scored together
    warmup: int  # segments needed before alerts
    alert_threshold: float  # on the verdict's probability
    release_threshold: float
    vlm_budget: int  # frames judged per event
    reference: int  # segments outside events the cues are relative to (0: the window)

    @staticmethod
    def resolve(config: StreamConfig, analyzer: SegmentAnalyzer) -> StreamSettings:
        window = config.window_segments or analyzer.settings.ingest.segments
        segment_s = config.segment_s or max(run_segment_s(analyzer), config.min_segment_s)
        threshold = analyzer.verdict.threshold if config.alert_threshold is None else config.alert_threshold
        warmup = min(config.warmup_segments or window, window)
        reference = 4 * window if config.reference_segments is None else config.reference_segments
        return StreamSettings(segment_s, window, warmup, threshold,
                              max(threshold - config.release_gap, 0.0),
                              config.vlm_budget or analyzer.settings.sample.budget, reference)


def run_segment_s(analyzer: SegmentAnalyzer) -> float:
    """The median segment span of the run's ingested videos, in seconds (0.0 when the run has none)."""
    table = read_input(analyzer.run, paths.SEGMENTS, columns=[S.START_FRAME, S.END_FRAME, S.FPS])
    if table is None or table.num_rows == 0:
        return 0.0
    spans = (np.asarray(table[S.END_FRAME]) - np.asarray(table[S.START_FRAME])) / np.asarray(table[S.FPS])
    return float(np.median(spans))


@dataclass
class _Segment:
    """A segment of stream time: its analysed frames (ticks), its part, its scores."""

    number: int  # on the segment grid (what event ids count)
    start_s: float
    end_s: float
    start_wall: float
    end_wall: float
    first_tick: int  # analysed frames [first_tick, end_tick)
    end_tick: int
    thumbnail: bytes  # JPEG of its first analysed frame
    pairs: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)  # while filling
    # JPEGs of every ``stride``-th analysed frame at the run's image size, for the VLM, while in the window
    jpegs: list[bytes] = field(default_factory=list)
    part: SegmentPart | None = None
    score: float = 0.0  # the scorer's, from the newest window holding it
    smoothed: float = 0.0  # the mean of the newest `smoothing` scorer scores when it closed
    alert: float = 0.0  # the verdict on ``smoothed`` without the VLM: the alert score
    category: str | None = None
    category_probability: float | None = None


@dataclass
class _Open:
    """The event being followed."""

    event: Event
    segments: list[_Segment]
    peak: _Segment
    below_since: float | None = None  # stream second the score went below the release threshold


class _Bucket:
    """A token bucket: ``rate_per_minute`` tokens a minute, holding at most max(1, rate) (wall clock)."""

    def __init__(self, rate_per_minute: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.capacity, self.clock = rate_per_minute / 60.0, max(1.0, rate_per_minute), clock
        self.tokens, self.last = self.capacity, clock()

    def take(self) -> bool:
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class StreamDetector:
    """One stream followed by a run's scorer (module docstring).

    ``stream_id``: the name events and serve use; ``stream_key``: what event ids hash (``stream_id`` unless
    given: give the URL, or a name stable across restarts). ``judge`` None, or ``stream.vlm`` false: events
    carry the scorer's answer alone.
    """

    def __init__(self, analyzer: SegmentAnalyzer, config: StreamConfig, stream_id: str,
                 stream_key: str | None = None, judge: JudgeFn | None = None,
                 sinks: list[EventSink] | None = None) -> None:
        self.analyzer, self.config, self.stream_id = analyzer, config, stream_id
        self.stream_key = stream_key or stream_id
        self.judge = judge if config.vlm else None
        self.sinks = list(sinks or [])
        self.settings = StreamSettings.resolve(config, analyzer)
        ingest = analyzer.settings.ingest
        self._pairs = max(ingest.frames_per_segment // 2, 1)
        self._size = analyzer.extractor.decode_size
        self._scaler = FrameScaler()
        self._lock = threading.RLock()  # guards what status(), timeline() and events read
        self._stopping = threading.Event()
        self._source: LiveSource | None = None
        self._filling: _Segment | None = None
        self._window: deque[_Segment] = deque(maxlen=self.settings.window)
        self._history: deque[SegmentPart] = deque(maxlen=max(self.settings.reference, 1))  # outside events
        self._timeline: deque[_Segment] = deque(maxlen=TIMELINE_SEGMENTS)
        # a segment keeps every stride-th analysed frame for the VLM: at most vlm_budget of them, all an
        # allocation can give one segment, so memory is bounded by window x vlm_budget JPEGs
        per_segment = self.settings.segment_s * config.analysis_fps
        self._stride = max(1, math.ceil(per_segment / self.settings.vlm_budget))
        self._grid_offset = 0  # keeps segment numbers increasing when the source's clock restarts
        self._open: _Open | None = None
        self._events: list[Event] = []
        self._bucket = _Bucket(config.vlm_calls_per_minute)
        self._vlm = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"dualvad-vlm-{stream_id}")
        self._pending: list[Any] = []
        self._state = "idle"
        self._counts = {"frames": 0, "segments": 0, "vlm_calls": 0, "vlm_skipped": 0, "vlm_errors": 0}
        self._lag_s = 0.0
        self._analysis_ms = 0.0  # the newest segment's analysis time (features + window + scorer)

    # ------------------------------------------------------------------------------------------ running

    def run(self, source: LiveSource, max_seconds: float | None = None) -> None:
        """Analyse ``source`` until it ends, :meth:`stop` is called, or ``max_seconds`` (wall clock) passed;
        the open event is then closed and delivered, after the VLM's pending judgements (bounded)."""
        self._source = source
        self._state = "running"
        timer = threading.Timer(max_seconds, self.stop) if max_seconds is not None else None
        if timer is not None:
            timer.daemon = True
            timer.start()
        try:
            for frame in source.frames():
                if self._stopping.is_set():
                    break
                self._take(frame)
            if self._filling is not None:
                self._close_segment(self._filling)
        finally:
            if timer is not None:
                timer.cancel()
            if self._open is not None:
                self._close_event()
            self._vlm.shutdown(wait=False)
            for future in self._pending:
                future.result(timeout=JUDGE_WAIT_S)
            self._state = "stopped" if self._stopping.is_set() else "ended"

    def stop(self) -> None:
        """Ask :meth:`run` to finish (thread-safe, returns at once)."""
        self._stopping.set()
        if self._source is not None:
            self._source.stop()

    def _take(self, frame: SourceFrame) -> None:
        """One analysed frame: into its segment, closing the previous one when the frame starts a new one."""
        number = self._segment_number(frame)
        if self._filling is not None and number != self._filling.number:
            self._close_segment(self._filling)
            self._filling = None
        small = self._scaler.rgb(frame.frame, *self._size), self._scaler.rgb(frame.next_frame, *self._size)
        if self._filling is None:
            self._filling = _Segment(number, frame.stream_s, frame.stream_s, frame.wall_time, frame.wall_time,
                                     frame.index, frame.index, self._thumbnail(frame.frame))
        segment = self._filling
        segment.pairs.append(small)
        segment.end_s = frame.stream_s + 1.0 / self.config.analysis_fps
        segment.end_wall, segment.end_tick = frame.wall_time, frame.index + 1
        if self.judge is not None and (frame.index - segment.first_tick) % self._stride == 0:
            segment.jpegs.append(self._jpeg(frame.frame))
        self._counts["frames"] += 1
        self._lag_s = time.time() - frame.wall_time

    def _segment_number(self, frame: SourceFrame) -> int:
        """The frame's segment on the grid of the source's clock (stream time without one); a clock that
        goes back (a source that restarted its timestamps) continues the numbering after the last one."""
        clock = frame.source_s if frame.source_s is not None else frame.stream_s
        number = math.floor(clock / self.settings.segment_s) + self._grid_offset
        last = self._filling.number if self._filling is not None else (
            self._window[-1].number if self._window else None)
        if last is not None and number < last:
            self._grid_offset += last + 1 - number
            number = last + 1
        return number

    # ---------------------------------------------------------------------------------------- analysis

    def _close_segment(self, segment: _Segment) -> None:
        """Its part, the window's scores, the alert score, and what it does to events."""
        started = time.perf_counter()
        segment.part = self.analyzer.extractor.segment_part(self._segment_frames(segment.pairs))
        segment.pairs = []
        if len(self._window) == self._window.maxlen:
            with self._lock:
                self._window[0].jpegs = []  # leaves the window: its frames are no longer the VLM's
        self._window.append(segment)
        window = list(self._window)
        features = self.analyzer.extractor.window_features(SegmentPart.join([s.part for s in window]),
                                                           self._reference())
        scores, categories = self.analyzer.scorer.predict(features[None])
        for member, score in zip(window, scores[0].tolist(), strict=True):
            member.score = float(score)
        segment.category, segment.category_probability = self.analyzer.category(categories)
        segment.smoothed = float(np.mean([member.score for member in window[-self.config.smoothing:]]))
        segment.alert = float(apply(self.analyzer.verdict, segment.smoothed, NEUTRAL_VLM))
        with self._lock:
            self._timeline.append(segment)
            self._counts["segments"] += 1
            self._analysis_ms = (time.perf_counter() - started) * 1000.0
        if len(window) >= self.settings.warmup:
            self._follow(segment)
        if self.settings.reference:
            self._history.append(segment.part)

    def _reference(self) -> SegmentPart | None:
        """The usual scene the window's cues are relative to: the history of segments outside events once
        it holds a window's worth (until then, and with ``reference_segments`` 0, the window itself)."""
        if not self.settings.reference or len(self._history) < self.settings.window:
            return None
        return SegmentPart.join(list(self._history))

    def _segment_frames(self, pairs: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        """uint8 (1, 2P, h, w, 3): P pairs spread evenly over the segment's (cyclically repeated when it has
        fewer), as ingest takes P pairs of a file's segment."""
        chosen = np.floor((np.arange(self._pairs) + 0.5) * len(pairs) / self._pairs).astype(int)
        if len(pairs) < self._pairs:
            chosen = np.arange(self._pairs) % len(pairs)
        return np.stack([frame for index in chosen for frame in pairs[index]])[None]

    def _follow(self, segment: _Segment) -> None:
        """Open, extend or close the event on the newest segment's alert score."""
        settings = self.settings
        if self._open is None:
            if segment.alert >= settings.alert_threshold:
                self._open_event(segment)
            return
        current = self._open
        current.segments.append(segment)
        if segment.alert > current.peak.alert:
            current.peak = segment
        if segment.alert >= settings.release_threshold:
            current.below_since = None
        elif current.below_since is None:
            current.below_since = segment.start_s
        held = current.below_since is not None and segment.end_s - current.below_since >= self.config.hold_s
        too_long = segment.end_s - current.event.start_s >= self.config.max_event_s
        if held or too_long:
            self._close_event()
            if too_long and not held and segment.alert >= settings.alert_threshold:
                self._open_event(segment)

    def _open_event(self, segment: _Segment) -> None:
        """A new event from ``segment`` (and the newest segments before it that reach the release
        threshold: where the anomaly began, which smoothing reports a segment late)."""
        first = segment
        for earlier in reversed(list(self._window)[-self.config.smoothing:-1]):
            if apply(self.analyzer.verdict, earlier.score, NEUTRAL_VLM) < self.settings.release_threshold:
                break
            first = earlier
        members = [s for s in self._window if s.number >= first.number]
        event = Event(stream_id=self.stream_id, event_id=event_id(self.stream_key, first.number),
                      start_s=first.start_s, end_s=segment.end_s, start_time=iso_time(first.start_wall),
                      end_time=iso_time(segment.end_wall), score=segment.alert,
                      peak_scorer_score=max(s.score for s in members), category=segment.category,
                      category_probability=segment.category_probability,
                      thumbnail_jpeg=_b64(segment.thumbnail))
        with self._lock:
            self._open = _Open(event, members, segment)
            self._events.append(event)
        self._emit("open", event)

    def _close_event(self) -> None:
        """The open event, closed at its last segment above the release threshold; judged by the VLM in
        the worker thread when the budget allows, then delivered."""
        current, self._open = self._open, None
        assert current is not None
        kept = [s for s in current.segments if s.alert >= self.settings.release_threshold] or current.segments
        last, peak = kept[-1], current.peak
        event = current.event
        with self._lock:
            event.end_s, event.end_time = last.end_s, iso_time(last.end_wall)
            event.peak_scorer_score = max(s.score for s in current.segments)
            event.score = peak.alert
            event.category, event.category_probability = peak.category, peak.category_probability
            event.thumbnail_jpeg = _b64(peak.thumbnail)
        segments = [s for s in current.segments if s.end_tick <= last.end_tick]
        if self.judge is None:
            self._finish(event, "" if not self.config.vlm else "no VLM judge given")
        elif not self._bucket.take():
            self._counts["vlm_skipped"] += 1
            self._finish(event, f"over the stream's VLM budget ({self.config.vlm_calls_per_minute:g} calls "
                                "a minute, stream.vlm_calls_per_minute)")
        else:
            self._pending = [future for future in self._pending if not future.done()]  # bounded
            self._pending.append(self._vlm.submit(self._judge_event, event, segments, peak.smoothed))

    def _judge_event(self, event: Event, segments: list[_Segment], smoothed: float) -> None:
        """The VLM's score and explanation of the event's allocated frames, and the verdict on the VLM's
        score and ``smoothed``, the peak's smoothed scorer score (worker thread)."""
        assert self.judge is not None
        try:
            jpegs = self._allocated_jpegs(segments)
            if not jpegs:
                self._finish(event, "the event's frames left the kept window before the VLM's turn")
                return
            judgement = self.judge(jpegs)
            vlm_score = video_score_from_clips(np.asarray(judgement.clip_scores))
            best = int(np.argmax(judgement.clip_scores))
            with self._lock:
                self._counts["vlm_calls"] += 1
                event.vlm_score, event.frames_judged = vlm_score, len(jpegs)
                event.explanation = judgement.explanations[best] if judgement.explanations else ""
                event.score = float(apply(self.analyzer.verdict, smoothed, vlm_score))
            self._finish(event, "")
        except Exception as error:  # noqa: BLE001 - the event is still delivered, with the reason
            with self._lock:
                self._counts["vlm_errors"] += 1
            self._finish(event, f"the VLM failed: {type(error).__name__}: {error}")

    def _allocated_jpegs(self, segments: list[_Segment]) -> list[bytes]:
        """The event's frames the run's allocation picks among those its segments still keep, in time
        order: the allocation runs over the kept frames, each segment one span of them."""
        with self._lock:
            kept = [s for s in segments if s.jpegs]
            if not kept:
                return []
            frames = [jpeg for s in kept for jpeg in s.jpegs]
            ends = np.cumsum([len(s.jpegs) for s in kept])
            bounds = np.stack([ends - [len(s.jpegs) for s in kept], ends], axis=1).astype(np.int64)
        sample = self.analyzer.settings.sample
        budget = min(self.settings.vlm_budget, len(frames))
        allocation = allocate(sample.strategy, np.array([s.score for s in kept]), bounds, budget,
                              tau=sample.tau, floor=min(sample.floor, budget // len(kept)),
                              offset=sample.cdf_offset, seed=sample.seed + kept[0].number)
        return [frames[position] for position in allocation.frames.tolist()]

    def _finish(self, event: Event, skipped: str) -> None:
        with self._lock:
            event.state, event.vlm_skipped = "closed", skipped
        self._emit("close", event)

    def _emit(self, kind: EventKind, event: Event) -> None:
        with self._lock:
            snapshot = replace(event, extra=dict(event.extra))  # sinks see the event as it is now
        for sink in self.sinks:
            sink.emit(kind, snapshot)

    # ------------------------------------------------------------------------------------------- frames

    def _jpeg(self, picture: Any) -> bytes:
        """``picture`` (an ``av.VideoFrame``) at the run's image size as JPEG (the run's quality): what the
        file detector sends the Judge."""
        settings = self.analyzer.settings
        width, height = frame_size(picture.width, picture.height, settings.image_size)
        return encode_jpeg(self._scaler.rgb(picture, width, height), settings.jpeg_quality)

    def _thumbnail(self, picture: Any) -> bytes:
        """``picture`` (an ``av.VideoFrame``) as a JPEG ``thumbnail_width`` px wide."""
        width = self.config.thumbnail_width
        height = max(2, round(picture.height * width / picture.width / 2) * 2)
        return encode_jpeg(self._scaler.rgb(picture, width, height), 80)

    # ------------------------------------------------------------------------------------------- reading

    def status(self) -> dict[str, Any]:
        """JSON-ready: state, lag behind live (s), frames and segments analysed, the source's stats (fps in,
        drops, reconnects, gaps), events (count), the open event, VLM calls and skips."""
        source = self._source.stats if self._source is not None else None
        with self._lock:
            return {
                "stream_id": self.stream_id, "state": self._state, "lag_s": self._lag_s,
                "frames_analysed": self._counts["frames"], "segments": self._counts["segments"],
                "analysis_ms": self._analysis_ms, "events": len(self._events),
                "open_event": self._open.event.to_dict() if self._open is not None else None,
                "vlm_calls": self._counts["vlm_calls"], "vlm_skipped": self._counts["vlm_skipped"],
                "vlm_errors": self._counts["vlm_errors"],
                "settings": {"segment_s": self.settings.segment_s, "window": self.settings.window,
                             "alert_threshold": self.settings.alert_threshold,
                             "release_threshold": self.settings.release_threshold,
                             "analysis_fps": self.config.analysis_fps},
                "source": _source_dict(source),
            }

    def timeline(self, since_s: float = 0.0) -> dict[str, Any]:
        """JSON-ready recent history for a page: ``segments`` [{start_s, end_s, score, scorer_score}],
        ``gaps`` [[start_s, end_s]], ``events`` (dicts, oldest first), from stream second ``since_s``."""
        gaps = self._source.stats.gaps if self._source is not None else []
        with self._lock:
            segments = [{"start_s": s.start_s, "end_s": s.end_s, "score": s.alert, "scorer_score": s.score}
                        for s in self._timeline if s.end_s > since_s]
            events = [event.to_dict() for event in self._events if event.end_s > since_s]
        return {"segments": segments, "gaps": [list(gap) for gap in gaps if gap[1] > since_s],
                "events": events, "alert_threshold": self.settings.alert_threshold}

    @property
    def events(self) -> list[Event]:
        """The events seen so far (closed and open), oldest first."""
        with self._lock:
            return list(self._events)


def _b64(jpeg: bytes) -> str:
    return base64.b64encode(jpeg).decode("ascii")


def _source_dict(stats: Any) -> dict[str, Any] | None:
    return None if stats is None else asdict(stats)
