"""Live cameras (issue 31): the stream detector on real RTSP streams over loopback, against a naive baseline.

Prepares (once, cached under ``bench/out/streams/``) a run like the demo's scorer on a generated 320x240
30-fps corpus (3-s videos, K=12; the VLM is left out: these are the scorer-only figures), and generated
320x240 30-fps stream clips, each with one event at known frames (and as many normal clips). GStreamer's RTSP
server (``tests/rtsp_server.py``: each client gets the clip from its start, in real time) serves them on
loopback.

1. **Event to alert** (scorer only, ``--fps`` analysed frames a second): for each clip, the wall time the
   alert (the event's ``open``) reached the sink minus the wall time the clip's first anomalous frame was
   published. The publication time of stream second t is ``t0 + t``, with ``t0`` the smallest
   ``wall_time - stream_s`` over the frames the watcher received: the server sends in real time, so the
   frame that arrived soonest after its publication bounds ``t0`` from above, and the latency printed is
   at most the true one plus that frame's own transit (loopback: milliseconds). The alert goes to an
   in-process sink; serve's SSE adds its HTTP delivery. Also: events found, and false alarms on the normal
   clips.
2. **Streams held per core**: ``--streams`` watchers of one long clip on one core (this process pinned with
   ``sched_setaffinity``; the RTSP server runs on the other), every frame decoded, ``--fps`` analysed, for
   ``--minutes``: lag behind live at the start and the end, drops, decoded and analysed fps, CPU per stream.
3. **The naive baseline**: ffmpeg records each stream into closed 10-s chunks (``-c copy``) and the file
   detector (:class:`dualvad.detector.SegmentAnalyzer`, the same run) analyses each chunk once it closes;
   an alert is a chunk whose verdict score reaches the threshold. Its event-to-alert latency and CPU per
   stream, beside the stream detector's.

Targets (issue 31): event to alert p50 and p95 under 2 s; at least 8 streams held per core with lag not
growing over 5 minutes.

    python bench/streams.py [--clips 6] [--streams 8] [--minutes 5] [--fps 10]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dualvad.eval.verdict import apply

from common import OUT, detect_run, ffmpeg_binary

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the loopback RTSP server the stream tests use

from streams import RtspServer, servers_present  # noqa: E402 - after the path

FOLDER = OUT / "streams"
WIDTH, HEIGHT, FPS = 320, 240, 30
CHUNK_S = 10.0  # the naive baseline's chunks


def main() -> None:
    args = _args()
    if not servers_present():
        sys.exit("bench/streams.py needs ffmpeg and GStreamer's RTSP server (apt-get install "
                 "gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good python3-gi)")
    config = _run()
    from dualvad.detector import SegmentAnalyzer

    analyzer = SegmentAnalyzer.from_run(config.run)
    if args.skip_latency:
        _capacity(analyzer, args)
        return
    clips = _clips(args.clips, args.clip_seconds)
    print(f"\nrun {config.run}: segment span {_span(analyzer):.2f} s; {len(clips)} clips of "
          f"{args.clip_seconds:g} s ({sum(c.event is not None for c in clips)} with an event)", flush=True)
    stream_rows, stream_cpu = _process_cpu(_latency, analyzer, clips, args)
    naive_rows, naive_cpu = ([], 0.0) if args.skip_naive else _process_cpu(_naive, analyzer, clips, args)
    stream_seconds = len(clips) * args.clip_seconds
    from dualvad.stream.detector import StreamSettings

    settings = StreamSettings.resolve(_config(args), analyzer)
    warmup_s = settings.warmup * settings.segment_s
    print(f"\nstream detector: segments of {settings.segment_s:g} s, a window of {settings.window}, alerts "
          f"after {warmup_s:g} s of warm-up at {settings.alert_threshold:.3f}; events starting in the "
          "warm-up are left out of both systems' figures")
    _print_latency([("stream detector", stream_rows, stream_cpu / stream_seconds),
                    ("naive: 10-s chunks", naive_rows, naive_cpu / stream_seconds)], warmup_s)
    if not args.skip_capacity:
        _capacity(analyzer, args)


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=6, help="clips with an event (as many normal ones)")
    parser.add_argument("--clip-seconds", type=float, default=30.0)
    parser.add_argument("--fps", type=float, default=10.0, help="analysed frames per second")
    parser.add_argument("--streams", type=int, default=8, help="streams held on one core")
    parser.add_argument("--minutes", type=float, default=5.0, help="how long the streams are held")
    parser.add_argument("--concurrent", type=int, default=4, help="clips streamed at once for the latency")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                        help="a stream.* setting for the stream detector (repeatable), e.g. smoothing=3")
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument("--skip-latency", action="store_true", help="only the streams held per core")
    parser.add_argument("--skip-capacity", action="store_true")
    return parser.parse_args()


def _process_cpu(phase, *args):
    """``phase(*args)`` and the CPU seconds this process spent in it (every thread; not the RTSP servers
    nor ffmpeg, which are other processes)."""
    before = resource.getrusage(resource.RUSAGE_SELF)
    result = phase(*args)
    after = resource.getrusage(resource.RUSAGE_SELF)
    return result, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


# ------------------------------------------------------------------------------------------- inputs


def _run():
    """The run (cached): the demo's scorer settings on a 320x240 30-fps generated corpus."""
    from dualvad.corpus import SynthSpec, generate_corpus

    corpus = FOLDER / "corpus"
    if not (corpus / "annotations").is_dir():
        print("generating the training corpus ...", flush=True)
        generate_corpus(corpus, SynthSpec(videos=160, seconds=3.0, fps=FPS, width=WIDTH, height=HEIGHT,
                                          test_share=0.25, seed=3))
    return detect_run("streams", corpus, budget=8, overrides=("ingest.segments=12", "scorer.epochs=40"))


def _span(analyzer) -> float:
    from dualvad.stream.detector import run_segment_s

    return run_segment_s(analyzer)


@dataclass
class Clip:
    path: Path
    event: tuple[float, float] | None  # seconds [start, end) of the event; None: normal
    label: str


def _clips(count: int, seconds: float) -> list[Clip]:
    """``count`` clips with an event and ``count`` normal ones (generated once)."""
    from dualvad.corpus.synth_plan import SynthSpec, plan_corpus
    from dualvad.corpus.synthetic import encode_mp4, render_video

    spec = SynthSpec(videos=2 * count, seconds=seconds, fps=FPS, width=WIDTH, height=HEIGHT, seed=101)
    folder = FOLDER / f"clips-{2 * count}x{seconds:g}s"
    folder.mkdir(parents=True, exist_ok=True)
    clips = []
    for plan in plan_corpus(spec):
        path = folder / f"{plan.index:02d}.mp4"
        if not path.exists():
            encode_mp4(render_video(spec, plan), path, FPS)
        event = None if plan.event is None else (plan.event[0] / FPS, plan.event[1] / FPS)
        clips.append(Clip(path, event, plan.label))
    return clips


# ------------------------------------------------------------------------------------------ latency


@dataclass
class Watched:
    """One clip watched live: when its frames arrived, when alerts went out."""

    clip: Clip
    offsets: list[float] = field(default_factory=list)  # wall_time - stream_s of each analysed frame
    opened: list[tuple[float, float, float]] = field(default_factory=list)  # (wall, start_s, end_s) alerts

    def t0(self) -> float:
        return min(self.offsets)

    def hit(self, bound_s: float = 2.0) -> float | None:
        """Event to alert (s) of the first alert overlapping the event (within ``bound_s``), else None."""
        if self.clip.event is None:
            return None
        start, end = self.clip.event
        for wall, first, _ in self.opened:
            if start - bound_s <= first <= end:
                return wall - (self.t0() + start)
        return None

    def false_alarms(self, bound_s: float = 2.0) -> int:
        if self.clip.event is None:
            return len(self.opened)
        start, end = self.clip.event
        return sum(not start - bound_s <= first <= end for _, first, _ in self.opened)


class _Alerts:
    """A sink noting when each alert (an event's ``open``) arrived."""

    def __init__(self, watched: Watched) -> None:
        self.watched = watched

    def emit(self, kind, event) -> None:
        if kind == "open":
            self.watched.opened.append((time.time(), event.start_s, event.end_s))

    def close(self) -> None:
        pass


class _Timed:
    """A LiveSource whose frames' arrival offsets are noted."""

    def __init__(self, source, watched: Watched) -> None:
        self.source, self.watched = source, watched
        self.stats = source.stats  # the detector reads these

    def __getattr__(self, name):
        return getattr(self.source, name)

    def frames(self):
        for frame in self.source.frames():
            self.watched.offsets.append(frame.wall_time - frame.stream_s)
            yield frame


def _watch_clip(analyzer, clip: Clip, args, results: list[Watched]) -> None:
    from dualvad.stream.detector import StreamDetector

    watched = Watched(clip)
    config = _config(args)
    with RtspServer(clip.path) as server:
        source = _source(server.url, config, max_reconnects=0)  # the server's clip ends: so does the watch
        detector = StreamDetector(analyzer, config, clip.path.name, sinks=[_Alerts(watched)])
        detector.run(_Timed(source, watched), max_seconds=args.clip_seconds + 3.0)
        source.stop()
    results.append(watched)


def _config(args):
    """The stream detector's settings: scorer only, ``--fps``, and every ``--set``."""
    from dualvad.config import load_config

    overrides = [f"stream.analysis_fps={args.fps}", "stream.vlm=false",
                 *(f"stream.{setting}" for setting in args.settings)]
    return load_config(None, overrides).stream


def _source(url: str, config, **options):
    """A LiveSource of ``url`` with the ``stream.*`` settings of ``config``."""
    from dualvad.stream.source import LiveSource

    return LiveSource.from_config(url, config, **options)


def _latency(analyzer, clips: list[Clip], args) -> list[Watched]:
    """Every clip watched live, ``--concurrent`` at a time."""
    print(f"\nwatching {len(clips)} clips live over RTSP, {args.concurrent} at a time ...", flush=True)
    return _in_batches(clips, args.concurrent,
                       lambda clip, results: _watch_clip(analyzer, clip, args, results))


def _in_batches(clips: list[Clip], concurrent: int, watch) -> list[Watched]:
    """``watch(clip, results)`` for every clip, ``concurrent`` clips at a time (a thread each); each call
    appends its :class:`Watched` to ``results``."""
    results: list[Watched] = []
    for first in range(0, len(clips), concurrent):
        batch = clips[first:first + concurrent]
        threads = [threading.Thread(target=watch, args=(clip, results)) for clip in batch]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    return results


# -------------------------------------------------------------------------------------------- naive


def _naive_clip(analyzer, clip: Clip, folder: Path, results: list[Watched]) -> None:
    """ffmpeg records the stream into 10-s chunks; each closed chunk goes through the file detector."""
    watched = Watched(clip)
    shutil.rmtree(folder, ignore_errors=True)  # chunks of an earlier run would pass for closed ones
    folder.mkdir(parents=True)
    pattern = folder / "chunk%03d.mp4"
    with RtspServer(clip.path) as server:
        connected = time.time()
        recorder = subprocess.Popen(
            [ffmpeg_binary(), "-v", "error", "-rtsp_transport", "tcp", "-i", server.url, "-c", "copy", "-f",
             "segment", "-segment_time", str(CHUNK_S), "-reset_timestamps", "1", str(pattern)],
            stdin=subprocess.DEVNULL)
        done, index = False, 0
        while not done:
            done = recorder.poll() is not None
            chunk, following = folder / f"chunk{index:03d}.mp4", folder / f"chunk{index + 1:03d}.mp4"
            if following.exists() or (done and chunk.exists()):  # the recorder moved on: closed
                analysis = analyzer.analyze(str(chunk))
                verdict = analyzer.verdict
                scores = apply(verdict, analysis.segment_scores, 0.5)
                if scores.max() >= verdict.threshold:
                    peak = int(np.argmax(scores))
                    start_s = index * CHUNK_S + analysis.bounds[peak][0] / analysis.video.fps
                    watched.opened.append((time.time(), start_s, start_s))
                index += 1
            else:
                time.sleep(0.05)
        watched.offsets.append(connected)  # the naive watcher's t0: when recording began
    results.append(watched)


def _naive(analyzer, clips: list[Clip], args) -> list[Watched]:
    print(f"\nthe naive baseline: 10-s chunks through the file detector, {args.concurrent} clips at a time",
          flush=True)
    return _in_batches(clips, args.concurrent, lambda clip, results: _naive_clip(
        analyzer, clip, FOLDER / "naive" / clip.path.stem, results))


def _print_latency(systems: list[tuple[str, list[Watched], float]], warmup_s: float) -> None:
    """One row per system: (name, its watched clips, its CPU seconds per second of stream); events that
    start within ``warmup_s`` of a clip's start are left out."""
    print("\n| system | events found | event to alert p50 (s) | p95 (s) | false alarms | "
          "CPU per stream (share of a core) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, rows, cpu in systems:
        if not rows:
            continue
        events = [row for row in rows if row.clip.event is not None and row.clip.event[0] >= warmup_s]
        latencies = [lat for lat in (row.hit() for row in events) if lat is not None]
        p50, p95 = (float(np.percentile(latencies, q)) if latencies else float("nan") for q in (50, 95))
        alarms = sum(row.false_alarms() for row in rows)
        print(f"| {name} | {len(latencies)}/{len(events)} | {p50:.2f} | {p95:.2f} | {alarms} | {cpu:.3f} |")
        for row in sorted(rows, key=lambda row: row.clip.path.name):
            span = row.clip.event
            event = "normal" if span is None else f"{span[0]:.1f}-{span[1]:.1f} s"
            alerts = ", ".join(f"{first:.1f} s" for _, first, _ in row.opened) or "none"
            hit = row.hit()
            print(f"  {name}: {row.clip.path.name} {row.clip.label} {event}: alerts at {alerts}"
                  + ("" if hit is None else f"; event to alert {hit:.2f} s"))


# ----------------------------------------------------------------------------------------- capacity


def _capacity(analyzer, args) -> None:
    """``--streams`` watchers of one long normal clip, on one core, for ``--minutes``."""
    from dualvad.corpus.synth_plan import SynthSpec, plan_corpus
    from dualvad.corpus.synthetic import encode_mp4, render_video
    from dualvad.stream.detector import StreamDetector

    seconds = args.minutes * 60 + 15
    spec = SynthSpec(videos=2, seconds=seconds, fps=FPS, width=WIDTH, height=HEIGHT, seed=202)
    path = FOLDER / f"long-{seconds:g}s.mp4"
    if not path.exists():
        print(f"\ngenerating a {seconds:g}-s clip ...", flush=True)
        normal = next(plan for plan in plan_corpus(spec) if plan.event is None)
        encode_mp4(render_video(spec, normal), path, FPS)
    with RtspServer(path) as server:
        cores = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cores[0]})  # this process (every watcher) on one core
        import torch

        torch.set_num_threads(1)
        config = _config(args)
        sources = [_source(server.url, config) for _ in range(args.streams)]
        detectors = [StreamDetector(analyzer, config, f"cam{i}") for i in range(args.streams)]
        threads = [threading.Thread(target=d.run, args=(s, args.minutes * 60), daemon=True)
                   for d, s in zip(detectors, sources, strict=True)]
        usage = resource.getrusage(resource.RUSAGE_SELF)
        started = time.monotonic()
        for thread in threads:
            thread.start()
        samples = []
        while any(thread.is_alive() for thread in threads):
            time.sleep(10)
            samples.append((time.monotonic() - started, [d.status() for d in detectors]))
            lags = [s["lag_s"] for s in samples[-1][1]]
            print(f"  {samples[-1][0]:5.0f} s: lag max {max(lags):.2f} s, drops "
                  f"{sum((s['source'] or {}).get('frames_dropped', 0) for s in samples[-1][1])}", flush=True)
        elapsed = time.monotonic() - started
        after = resource.getrusage(resource.RUSAGE_SELF)
        os.sched_setaffinity(0, set(cores))
    cpu = (after.ru_utime - usage.ru_utime) + (after.ru_stime - usage.ru_stime)
    final = [d.status() for d in detectors]
    decoded = sum((s["source"] or {}).get("frames_decoded", 0) for s in final)
    dropped = sum((s["source"] or {}).get("frames_dropped", 0) for s in final)
    analysed = sum(s["frames_analysed"] for s in final)
    early = [max(s["lag_s"] for s in statuses) for t, statuses in samples if t <= 60]
    late = [max(s["lag_s"] for s in statuses) for t, statuses in samples if t >= elapsed - 60]
    print("\n| streams on one core | minutes | decoded fps per stream | analysed fps per stream | dropped | "
          "lag max, first minute (s) | lag max, last minute (s) | CPU share of the core |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| {args.streams} | {elapsed / 60:.1f} | {decoded / args.streams / elapsed:.1f} | "
          f"{analysed / args.streams / elapsed:.1f} | {dropped} | {max(early, default=float('nan')):.2f} | "
          f"{max(late, default=float('nan')):.2f} | {cpu / elapsed:.2f} |")


if __name__ == "__main__":
    main()
