"""Ingest throughput and memory, side by side in one run.

Prints, on one generated corpus:
  * video frames covered per second per core by the ingest stage (1 and 2 Ray workers),
  * the same for a single-threaded ``ffmpeg -threads 1 -i f -f null -`` full decode (the floor),
  * the same for a naive loop decoding every frame with PyAV into NumPy (single-threaded),
  * the peak memory (RSS) of one ingest worker process on a 10-minute 640x480 video,
  * CPU-seconds per 1,000 video frames of the Ray worker processes, the driver and Ray's daemons
    (raylet, gcs_server, agents ...) during each ingest run, so that overhead shows on any machine, and
    the Parquet parts the workers wrote.

and, per CPU-second (the machine is shared: CPU time counts only this work), frames covered by the
ingest workers (and by every process of the run) against ffmpeg's (its child process's CPU time).

The corpus is by default the UCF-like one (``bench/common.py``: 320x240 30-fps videos of 1-8 minutes with
x264's default GOP, two of 1280x720; generated once, ~10 minutes of one core); ``--corpus short`` the older
one (``--videos`` x ``--seconds`` at ``--width`` x ``--height``, a keyframe every second).

Targets (issue 3): ingest >= 0.8x ffmpeg, >= 2x naive, 2 workers >= 1.6x 1 worker,
worker peak < 1.5 GiB; (issue 30) ingest >= 1.0x ffmpeg per CPU-second on the UCF-like corpus.

    python bench/ingest.py                      # the UCF-like corpus
    python bench/ingest.py --scale 0.1 --long-minutes 1   # a quick look
    python bench/ingest.py --corpus short --videos 16 --seconds 60   # the older corpus
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from common import ffmpeg_binary, ucf_like_arguments, ucf_like_corpus, ucf_like_spec

OUT = Path(__file__).resolve().parent / "out" / "ingest"


def main() -> None:
    args = _args()
    corpus = _corpus(args)
    files = sorted(str(p) for p in (corpus / "videos").rglob("*.mp4"))
    frames = _frame_counts(files)
    total = sum(frames)
    print(f"corpus: {len(files)} videos, {total} frames ({corpus})")

    ffmpeg_seconds, ffmpeg_cpu = _time_ffmpeg(files)
    results = {"ffmpeg -threads 1 full decode": _rate(total, ffmpeg_seconds, cores=1),
               "PyAV naive loop (every frame -> NumPy)": _rate(total, _time_pyav(files), cores=1)}
    # A first stage run on a tiny corpus pays Ray's once-per-session costs (worker processes,
    # Ray Data's stats actor); a long-lived cluster has paid them, so they are not counted.
    # What a stage run itself costs beyond decoding (actors, scheduling) is measured with them.
    fixed = _time_ingest(_warmup_corpus(), 1).seconds
    runs = {workers: _time_ingest(corpus, workers) for workers in (1, 2)}
    seconds_1, seconds_2 = runs[1].seconds, runs[2].seconds
    results["dualvad ingest, 1 worker"] = _rate(total, seconds_1, cores=1)
    results["dualvad ingest, 2 workers"] = _rate(total, seconds_2, cores=2)
    _print_table(results)

    ingest, ffmpeg = results["dualvad ingest, 1 worker"], results["ffmpeg -threads 1 full decode"]
    naive = results["PyAV naive loop (every frame -> NumPy)"]
    print(f"\ningest / ffmpeg full decode : {ingest / ffmpeg:5.2f}x   (target >= 0.8)")
    print(f"ingest / PyAV naive loop    : {ingest / naive:5.2f}x   (target >= 2)")
    print(f"2 workers / 1 worker (speed): {seconds_1 / seconds_2:5.2f}x   (target >= 1.6)")
    ceiling = _plain_process_scaling(files)
    print(f"   this machine's ceiling: the same extraction in 2 plain processes (no Ray) runs "
          f"{ceiling:.2f}x as fast as in 1")

    print(f"fixed cost of one ingest stage run (2 three-second videos, 1 worker): {fixed:.1f} s, "
          "included in the figures above")
    _print_cpu(runs, total)
    workers_cpu, all_cpu = runs[1].cpu["workers"], sum(runs[1].cpu.values())
    print(f"per CPU-second, 1 worker: ingest workers {total / workers_cpu:.0f} frames, every process of the "
          f"run {total / all_cpu:.0f}, ffmpeg {total / ffmpeg_cpu:.0f}: ingest / ffmpeg "
          f"{ffmpeg_cpu / workers_cpu:.2f}x (workers) {ffmpeg_cpu / all_cpu:.2f}x (all)   (target >= 1.0)")

    peak, baseline, long_frames = _worker_peak_memory(args.long_minutes)
    print(f"\none ingest worker on a {args.long_minutes:g}-minute 640x480 video ({long_frames} frames): "
          f"peak RSS {peak / 2**20:.0f} MiB (process before decoding: {baseline / 2**20:.0f} MiB; "
          f"target < 1536 MiB)")


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ucf_like_arguments(parser)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--long-minutes", type=float, default=10.0, help="length of the memory video")
    return parser.parse_args()


def _corpus(args: argparse.Namespace) -> Path:
    """Generate the bench corpus once; reuse it while the spec is unchanged."""
    from dualvad.corpus import SynthSpec, generate_corpus

    if args.corpus == "ucf-like":
        return ucf_like_corpus(ucf_like_spec(args))

    spec = SynthSpec(videos=args.videos, seed=7, width=args.width, height=args.height,
                     fps=args.fps, seconds=args.seconds)
    folder = OUT / f"corpus-{args.videos}x{args.seconds:g}s-{args.width}x{args.height}-{args.fps}"
    if not (folder / "annotations").is_dir():
        started = time.perf_counter()
        print(f"generating {folder} ...", flush=True)
        generate_corpus(folder, spec)
        print(f"generated in {time.perf_counter() - started:.0f} s", flush=True)
    return folder


def _warmup_corpus() -> Path:
    from dualvad.corpus import SynthSpec, generate_corpus

    folder = OUT / "warmup-corpus"
    if not (folder / "annotations").is_dir():
        generate_corpus(folder, SynthSpec(videos=2, seconds=3.0, anomaly_share=0.0))
    return folder


def _frame_counts(files: list[str]) -> list[int]:
    import decord

    return [len(decord.VideoReader(f, num_threads=1)) for f in files]


def _time_ffmpeg(files: list[str]) -> tuple[float, float]:
    """Wall seconds and CPU-seconds (the child processes') of a single-threaded full decode of ``files``."""
    binary = ffmpeg_binary()
    started, cpu = time.perf_counter(), _children_cpu()
    for path in files:
        subprocess.run([binary, "-v", "error", "-threads", "1", "-i", path, "-f", "null", "-"],
                       check=True)
    return time.perf_counter() - started, _children_cpu() - cpu


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _time_pyav(files: list[str]) -> float:
    import av

    started = time.perf_counter()
    for path in files:
        with av.open(path) as container:
            stream = container.streams.video[0]
            stream.codec_context.thread_count = 1
            for frame in container.decode(stream):
                frame.to_ndarray(format="rgb24")
    return time.perf_counter() - started


@dataclass(frozen=True)
class IngestRun:
    seconds: float  # the stage's own wall time
    cpu: dict[str, float]  # CPU-seconds (user + system) during the run, by process kind (see _cpu_seconds)
    processes: dict[str, int]  # processes of each kind alive at the end
    parts: int  # Parquet parts in RUN/segments
    part_bytes: int  # their size


def _time_ingest(corpus: Path, workers: int) -> IngestRun:
    """Wall time and CPU time of the ingest stage with ``workers`` Ray workers (Ray already running;
    its start is not counted, the workers' start is)."""
    import ray

    from dualvad.config import load_config
    from dualvad.pipeline.ingest import run_ingest
    from dualvad.pipeline.runtime import ensure_ray

    run = Path(tempfile.mkdtemp(prefix=f"ingest-{workers}w-", dir=OUT))
    config = load_config(None, [f"corpus={corpus}", f"run={run}", f"ingest.workers={workers}",
                                "ingest.cpus_per_worker=1", "ray.num_cpus=2"])
    ensure_ray(config.ray)
    ray.data.DataContext.get_current().enable_progress_bars = False
    before = _cpu_seconds()
    summary = run_ingest(config)
    after = _cpu_seconds()
    print(summary, flush=True)
    part_sizes = [p.stat().st_size for p in (run / "segments").glob("part-*.parquet")]
    cpu = dict.fromkeys(PROCESS_KINDS, 0.0)
    for pid, (kind, seconds) in after.items():  # a process started during the run counts from 0
        cpu[kind] += seconds - before.get(pid, (kind, 0.0))[1]
    shutil.rmtree(run)
    processes = {kind: sum(k == kind for k, _ in after.values()) for kind in PROCESS_KINDS}
    return IngestRun(summary.seconds, cpu, processes, len(part_sizes), sum(part_sizes))


PROCESS_KINDS = ("workers", "driver", "daemons")


def _cpu_seconds() -> dict[int, tuple[str, float]]:
    """pid -> (kind, CPU-seconds so far) of this process (the driver) and every process below it: Ray's
    worker processes (``ray::...``, which include Ray Data's helper actors) and its daemons (raylet,
    gcs_server, the agents, log_monitor ...), all started by the driver's ``ray.init``. A process that
    exits between two calls takes its time with it (the ingest workers are pooled and stay)."""
    import psutil

    driver = psutil.Process()
    seconds = {}
    for process in [driver, *driver.children(recursive=True)]:
        try:
            with process.oneshot():
                times, command = process.cpu_times(), " ".join(process.cmdline())
        except psutil.NoSuchProcess:
            continue
        kind = ("driver" if process.pid == driver.pid
                else "workers" if "ray::" in command or "default_worker.py" in command else "daemons")
        seconds[process.pid] = (kind, times.user + times.system)
    return seconds


def _print_cpu(runs: dict[int, IngestRun], frames: int) -> None:
    print(f"\nCPU-seconds per 1,000 video frames during the ingest stage ({frames} frames):")
    print(f"{'run':<12} {'workers':>8} {'driver':>8} {'daemons':>8} {'total':>8} {'wall s':>7} "
          f"{'parts':>6} {'KiB/part':>9}")
    for count, run in runs.items():
        per = {kind: run.cpu[kind] / frames * 1000 for kind in PROCESS_KINDS}
        print(f"{count} worker{'s' if count > 1 else ' '}   {per['workers']:8.3f} {per['driver']:8.3f} "
              f"{per['daemons']:8.3f} {sum(per.values()):8.3f} {run.seconds:7.1f} {run.parts:6d} "
              f"{run.part_bytes / max(run.parts, 1) / 1024:9.1f}")
    counts = ", ".join(f"{run.processes[kind]} {kind}" for kind in PROCESS_KINDS if kind != "driver")
    print(f"(processes at the end of the 2-worker run: {counts})")


def _extract_all(files: list[str]) -> None:
    from dualvad.config import IngestConfig
    from dualvad.scorer.features import build_extractor, ingested_video_features

    config = IngestConfig()
    extractor = build_extractor("motion", width=config.decode_width, height=config.decode_height)
    for path in files:
        ingested_video_features(path, extractor, config)


def _plain_process_scaling(files: list[str]) -> float:
    """Speed-up of 2 processes over 1 on the same feature extraction, without Ray."""
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(2) as pool:
        pool.submit(_extract_all, files[:1]).result()  # start-up and imports, not timed
        started = time.perf_counter()
        pool.submit(_extract_all, files).result()
        one = time.perf_counter() - started
        started = time.perf_counter()
        list(pool.map(_extract_all, [files[0::2], files[1::2]]))
        two = time.perf_counter() - started
    return one / two


def _rate(frames: int, seconds: float, cores: int) -> float:
    return frames / seconds / cores


def _print_table(results: dict[str, float]) -> None:
    print(f"\n{'method':<42} {'frames/s/core':>14}")
    for name, rate in results.items():
        print(f"{name:<42} {rate:14.0f}")


_WORKER_PROBE = """
import json, resource, sys
from dualvad.config import IngestConfig
from dualvad.corpus.layout import VideoRecord
from dualvad.pipeline.ingest import _extractor, segment_videos, video_rows
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
config = IngestConfig()
rows = video_rows([VideoRecord("long.mp4", sys.argv[1], "Normal", "test", None)])
out = segment_videos(rows, _extractor(config), config)
assert out.num_rows == 32 and out["reason"].null_count == 32, out["reason"].to_pylist()[:1]
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"before": before, "peak": peak, "frames": out["num_frames"][0].as_py()}))
"""


def _worker_peak_memory(minutes: float) -> tuple[int, int, int]:
    """Run the ingest worker's code on a long video in a fresh process; return its peak RSS."""
    video = OUT / f"long-{minutes:g}min-640x480.mp4"
    if not video.exists():
        subprocess.run([ffmpeg_binary(), "-v", "error", "-y", "-f", "lavfi", "-i",
                        "testsrc2=size=640x480:rate=30", "-t", str(minutes * 60), "-c:v", "libx264",
                        "-preset", "veryfast", "-pix_fmt", "yuv420p", str(video)], check=True)
    result = subprocess.run([sys.executable, "-c", _WORKER_PROBE, str(video)], check=True,
                            capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    numbers = json.loads(result.stdout.strip().splitlines()[-1])
    return numbers["peak"], numbers["before"], numbers["frames"]


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    main()
