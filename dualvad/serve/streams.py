"""Live streams in the Serve app: :class:`Streams` (the deployment that follows them) and
:class:`StreamRegistry` (a named detached actor, the table of wanted streams that outlives every replica).

The Api adds and deletes streams in the registry and answers every read from it (``GET /v1/streams...``, the
SSE endpoint's long polls); it never calls a Streams replica for a stream, so no request has to reach the one
replica that holds it. Each replica reports to the registry every ``REPORT_S`` seconds from a thread of its
own: the status and the new timeline of each stream it holds, and its room (``max_streams_per_replica``); the
answer says which streams to stop (deleted) and which to adopt (new ones, and those of a replica silent for
``stream_orphan_s``: dead). Each stream runs in its own thread: a
:class:`~dualvad.stream.detector.StreamDetector` on a :class:`~dualvad.stream.source.LiveSource`, sharing
the replica's :class:`~dualvad.detector.SegmentAnalyzer` (loaded once per replica, with its first stream)
and the Judge deployment (called synchronously from the stream's thread). Its events go to the registry,
which drops the ones it has already (ids are deterministic: a stream re-opened elsewhere reports an event
again under the same id).

Autoscaling: every replica reports ``replicas_needed`` (the streams wanted over ``max_streams_per_replica``,
rounded up) through ``record_autoscaling_stats``, and :func:`streams_policy` (Ray Serve's custom autoscaling
policy) asks for the largest of them, within the deployment's min and max replicas. With no stream the
deployment scales to zero replicas; the Api's call of :meth:`Streams.info` when a stream is added (or read
while pending) is the request that makes Serve start one. Metrics (Ray Serve's
metrics API, Prometheus ``ray_dualvad_streams_*``): streams held, events, frames dropped, VLM calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import ray
from ray import serve
from ray.serve import metrics
from ray.serve.handle import DeploymentHandle

from dualvad.serve.settings import AppArgs
from dualvad.serve.stream_table import Adoption, StreamLimitError, StreamTable
from dualvad.stream.config import StreamConfig
from dualvad.stream.events import Event, EventKind
from dualvad.stream.source import LiveSource

if TYPE_CHECKING:  # the models (torch) are imported with the first stream: a replica starts without them
    from dualvad.detector import SegmentAnalyzer
    from dualvad.stream.detector import StreamDetector
    from dualvad.vlm.judge import Judgement

log = logging.getLogger("ray.serve")

REPORT_S = 0.5  # how often a replica reports to the registry (the delay of a new stream's adoption)
REGISTRY_NAMESPACE = "dualvad-serve"
REGISTRY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 60.0  # a stream's thread ends within this once stopped (its VLM judgements are bounded)


# ------------------------------------------------------------------------------------------- registry


@ray.remote(num_cpus=0, max_restarts=0)
class StreamRegistry:
    """The :class:`~dualvad.serve.stream_table.StreamTable` of one app, in an async actor so that SSE long
    polls wait on a condition without holding a thread."""

    def __init__(self, orphan_s: float) -> None:
        self.table = StreamTable(orphan_s, time.time)
        self._changed: asyncio.Condition | None = None

    def _condition(self) -> asyncio.Condition:
        if self._changed is None:  # created on the actor's event loop
            self._changed = asyncio.Condition()
        return self._changed

    async def _notify(self) -> None:
        async with self._condition():
            self._condition().notify_all()

    async def add(self, url: str, name: str, limit: int) -> dict[str, Any] | str:
        """The new stream's summary, or the limit's message when ``limit`` streams are wanted already."""
        try:
            return self.table.add(url, name, limit)
        except StreamLimitError as error:
            return str(error)

    async def remove(self, stream_id: str) -> dict[str, Any] | None:
        removed = self.table.remove(stream_id)
        await self._notify()  # SSE waiters of the stream end
        return removed

    async def get(self, stream_id: str) -> dict[str, Any] | None:
        return self.table.get(stream_id)

    async def list(self) -> list[dict[str, Any]]:
        return self.table.list()

    async def timeline(self, stream_id: str, since_s: float) -> dict[str, Any] | None:
        return self.table.timeline(stream_id, since_s)

    async def seq_of(self, stream_id: str, event_id: str) -> int:
        return self.table.seq_of(stream_id, event_id)

    async def wait_messages(self, stream_id: str, after: int, timeout_s: float) -> tuple[list, bool]:
        """(the stream's messages after sequence number ``after``, whether the stream is still wanted), as
        soon as there is one, or after ``timeout_s`` (an SSE keep-alive) with none."""
        condition = self._condition()
        async with condition:
            with contextlib.suppress(TimeoutError):  # the keep-alive: nothing new
                await asyncio.wait_for(condition.wait_for(lambda: self._news(stream_id, after)), timeout_s)
        return self.table.messages_after(stream_id, after), stream_id in self.table.streams

    def _news(self, stream_id: str, after: int) -> bool:
        return stream_id not in self.table.streams or bool(self.table.messages_after(stream_id, after))

    async def report(self, replica: str, statuses: dict[str, dict[str, Any]],
                     timelines: dict[str, dict[str, Any]], capacity: int) -> dict[str, Any]:
        answer = self.table.report(replica, statuses, capacity)
        for stream_id, timeline in timelines.items():
            self.table.add_timeline(stream_id, replica, timeline)
        answer["adopt"] = [asdict(adoption) for adoption in answer["adopt"]]
        return answer

    async def record(self, stream_id: str, replica: str, kind: str, event: dict[str, Any]) -> bool:
        new = self.table.record(stream_id, replica, kind, event)
        if new:
            await self._notify()
        return new


def registry_actor(app_name: str, orphan_s: float) -> Any:
    """The app's registry (a handle), created by whichever of the Api and the Streams replicas asks first.
    Detached: it outlives the replicas (and a redeployed app of the same name adopts its streams again);
    ``ray.kill`` it, or stop Ray, to forget them."""
    return StreamRegistry.options(name=f"streams:{app_name}", namespace=REGISTRY_NAMESPACE,
                                  lifetime="detached", get_if_exists=True).remote(orphan_s)


# ------------------------------------------------------------------------------------------- autoscaling

REPLICAS_NEEDED = "replicas_needed"


def streams_policy(ctx: Any) -> tuple[int, dict[str, Any]]:
    """Ray Serve's custom autoscaling policy of :class:`Streams`: the largest ``replicas_needed`` any replica
    reported (they all read the same registry), within the deployment's bounds; the current target until a
    replica has reported."""
    reported = (ctx.aggregated_metrics or {}).get(REPLICAS_NEEDED, {})
    if not reported:
        return ctx.target_num_replicas, {}
    needed = math.ceil(max(reported.values()))
    return min(max(needed, ctx.capacity_adjusted_min_replicas), ctx.capacity_adjusted_max_replicas), {}


# min_replicas 0: an app that follows no stream holds no Streams replica; the Api wakes one (a request
# through the handle: Serve's cold start) when a stream is added or found pending
STREAMS_AUTOSCALING = {"min_replicas": 0, "initial_replicas": 0, "max_replicas": 2, "upscale_delay_s": 2.0,
                       "downscale_delay_s": 60.0,
                       "policy": {"policy_function": "dualvad.serve.streams:streams_policy"}}


# ------------------------------------------------------------------------------------------- the deployment


class StreamMetrics:
    """The replica's Ray Serve metrics (Prometheus ``ray_dualvad_streams_*``, tagged by Serve with the
    deployment and replica)."""

    def __init__(self) -> None:
        self.held = metrics.Gauge("dualvad_streams_held", description="streams this replica follows")
        self.events = metrics.Counter("dualvad_streams_events", description="events opened and closed",
                                      tag_keys=("kind",))
        self.dropped = metrics.Counter("dualvad_streams_frames_dropped",
                                       description="analysed frames dropped because analysis fell behind")
        self.vlm_calls = metrics.Counter("dualvad_streams_vlm_calls", description="calls of the Judge")


class RegistrySink:
    """An :class:`~dualvad.stream.events.EventSink` sending a stream's events to the registry (never waiting:
    the call is queued; :meth:`check` reports a failed delivery)."""

    def __init__(self, registry: Any, stream_id: str, replica: str, counter: Any) -> None:
        self.registry, self.stream_id, self.replica, self.counter = registry, stream_id, replica, counter
        self.pending: list[Any] = []
        self._lock = threading.Lock()

    def emit(self, kind: EventKind, event: Event) -> None:
        ref = self.registry.record.remote(self.stream_id, self.replica, kind, event.to_dict())
        self.counter.inc(tags={"kind": kind})
        with self._lock:
            self.pending.append(ref)

    def check(self) -> None:
        """Log every delivery that failed since the last check (the registry gone, say)."""
        with self._lock:
            done, self.pending = ray.wait(self.pending, num_returns=len(self.pending), timeout=0) \
                if self.pending else ([], [])
        for ref in done:
            try:
                ray.get(ref)
            except Exception as error:  # noqa: BLE001 - logged with the stream: the registry decides the rest
                log.error("stream %s: an event did not reach the registry: %r", self.stream_id, error)

    def close(self) -> None:
        self.check()


@dataclass
class Held:
    """One stream a replica follows: its detector, source and thread."""

    adoption: Adoption
    detector: StreamDetector
    source: LiveSource
    sink: RegistrySink
    thread: threading.Thread | None = None
    timeline_until_s: float = 0.0  # the detector's stream seconds the registry has the timeline of
    dropped_seen: int = 0
    error: str = ""

    def status(self) -> dict[str, Any]:
        """The detector's status; its ``state`` the source's (connecting, live, reconnecting) while it runs,
        else the detector's (idle, stopped, ended); ``error`` when its thread failed."""
        status = dict(self.detector.status())
        source = status.get("source") or {}
        if status.get("state") == "running" and source.get("state"):
            status["state"] = source["state"]
        if self.error:
            status["error"] = self.error
        return status


# health_check_period_s: Serve's default (10 s) would leave a dead replica's streams unwatched that long
# before it even starts another; a check is one cheap call
@serve.deployment(ray_actor_options={"num_cpus": 0.25}, max_ongoing_requests=8, health_check_period_s=2.0,
                  autoscaling_config=STREAMS_AUTOSCALING)
class Streams:
    """Follows the streams the registry gives it (module docstring)."""

    def __init__(self, judge: DeploymentHandle, args: dict[str, Any]) -> None:
        self.args = AppArgs(**args)
        self.config = StreamConfig(**self.args.stream)
        self.judge_handle = judge
        self._analyzer: SegmentAnalyzer | None = None  # loaded with the first stream (see analyzer)
        context = serve.get_replica_context()
        self.replica = context.replica_id.unique_id
        self.registry = registry_actor(context.app_name, self.args.stream_orphan_s)
        self.metrics = StreamMetrics()
        self.held: dict[str, Held] = {}
        self.failed: dict[str, str] = {}  # streams that could not start here: id -> why (reported, no retry)
        self.wanted = 0
        self.reports_failed = 0
        self._stopping = threading.Event()
        self._reporter = threading.Thread(target=self._report_loop, name="dualvad-streams-report",
                                          daemon=True)
        self._reporter.start()

    @property
    def analyzer(self) -> SegmentAnalyzer:
        """The run's analyzer, loaded when the first stream starts (from the report thread, the only caller):
        an app that follows no stream never pays for it (nor for importing torch in this replica: 2.5 s of
        CPU here), and its start (every ``dualvad serve``) waits for one model load fewer."""
        if self._analyzer is None:
            from dualvad.detector import SegmentAnalyzer

            self._analyzer = SegmentAnalyzer.from_run(self.args.run)
        return self._analyzer

    # ---------------------------------------------------------------------------------------- serve hooks

    def record_autoscaling_stats(self) -> dict[str, float]:
        """Serve's custom autoscaling metrics (read by :func:`streams_policy`)."""
        per = self.args.max_streams_per_replica
        return {REPLICAS_NEEDED: float(math.ceil(self.wanted / per)), "streams_held": float(len(self.held))}

    def check_health(self) -> None:
        if not self._reporter.is_alive():
            raise RuntimeError("the thread that reports to the stream registry has stopped")

    def info(self) -> dict[str, Any]:
        return {"replica": self.replica, "streams": sorted(self.held), "wanted": self.wanted,
                "max_streams_per_replica": self.args.max_streams_per_replica,
                "reports_failed": self.reports_failed}

    def __del__(self) -> None:
        """Serve's graceful shutdown: stop every stream (their open events close and are delivered)."""
        self._stopping.set()
        for held in [self.held.pop(stream_id) for stream_id in list(self.held)]:
            self._finish(held)

    # ---------------------------------------------------------------------------------------- reporting

    def _report_loop(self) -> None:
        while not self._stopping.wait(REPORT_S):
            try:
                self._report()
            except Exception as error:  # noqa: BLE001 - the next report retries; counted and logged
                self.reports_failed += 1
                log.error("streams replica %s: report to the registry failed: %r", self.replica, error)

    def _report(self) -> None:
        statuses: dict[str, dict[str, Any]] = {sid: {"state": "failed", "error": why}
                                               for sid, why in self.failed.items()}
        timelines = {}
        for stream_id, held in list(self.held.items()):
            held.sink.check()
            statuses[stream_id] = held.status()
            timeline = held.detector.timeline(held.timeline_until_s)
            if timeline.get("segments"):
                held.timeline_until_s = max(segment["end_s"] for segment in timeline["segments"])
            timelines[stream_id] = timeline
            dropped = int((statuses[stream_id].get("source") or {}).get("frames_dropped", 0))
            if dropped > held.dropped_seen:
                self.metrics.dropped.inc(dropped - held.dropped_seen)
                held.dropped_seen = dropped
        answer = ray.get(self.registry.report.remote(self.replica, statuses, timelines,
                                                     self.args.max_streams_per_replica),
                         timeout=REGISTRY_TIMEOUT_S)
        for stream_id in answer["stop"]:
            self._stop(stream_id)
            self.failed.pop(stream_id, None)
        for adoption in answer["adopt"]:
            try:
                self._start(Adoption(**adoption))
            except Exception as error:  # noqa: BLE001 - this stream fails (its error reported), not the replica
                self.failed[adoption["stream_id"]] = f"{type(error).__name__}: {error}"
                log.error("stream %s could not start: %r", adoption["stream_id"], error, exc_info=error)
        self.wanted = answer["wanted"]
        self.metrics.held.set(len(self.held))

    # ---------------------------------------------------------------------------------------- streams

    def _start(self, adoption: Adoption) -> None:
        from dualvad.stream.detector import StreamDetector

        sink = RegistrySink(self.registry, adoption.stream_id, self.replica, self.metrics.events)
        config = self.config
        judge = self._judge_fn(adoption.stream_id) if config.vlm else None
        detector = StreamDetector(self.analyzer, config, adoption.stream_id, stream_key=adoption.url,
                                  judge=judge, sinks=[sink])
        source = LiveSource.from_config(adoption.url, config)
        held = Held(adoption, detector, source, sink)
        held.thread = threading.Thread(target=self._follow, args=(held,), daemon=True,
                                       name=f"dualvad-stream-{adoption.stream_id}")
        self.held[adoption.stream_id] = held
        held.thread.start()
        log.info("streams replica %s: following stream %s (adoption at %.1f s)", self.replica,
                 adoption.stream_id, adoption.offset_s)

    def _follow(self, held: Held) -> None:
        try:
            held.detector.run(held.source)
        except Exception as error:  # noqa: BLE001 - the stream fails alone: reported, the others go on
            held.error = f"{type(error).__name__}: {error}"
            log.error("stream %s failed: %r", held.adoption.stream_id, error, exc_info=error)

    def _stop(self, stream_id: str) -> None:
        """Stop following ``stream_id``, from a thread of its own: a source may take seconds to let go, and
        the reports of the other streams must go on meanwhile."""
        held = self.held.pop(stream_id, None)
        if held is not None:
            threading.Thread(target=self._finish, args=(held,), daemon=True,
                             name=f"dualvad-stream-stop-{stream_id}").start()

    def _finish(self, held: Held) -> None:
        held.detector.stop()  # the open event is closed and delivered by the stream's thread
        if held.thread is not None:
            held.thread.join(timeout=STOP_TIMEOUT_S)
        held.sink.close()
        log.info("streams replica %s: stopped stream %s", self.replica, held.adoption.stream_id)

    def _judge_fn(self, stream_id: str) -> Any:
        """The detector's judge: the Judge deployment, called from the stream's thread (it waits)."""
        def judge(jpegs: list[bytes]) -> Judgement:
            self.metrics.vlm_calls.inc()
            response = self.judge_handle.judge.remote(f"stream-{stream_id}", jpegs, True)
            return response.result(timeout_s=self.args.request_timeout_s)

        return judge
