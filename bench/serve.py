"""Serving under load (issue 13): the dualvad app against a naive baseline, over loopback HTTP.

Prepares a run (a generated corpus, ingest, scorer, score, sample, benchmarks; a tiny random VLM stands in
for the fine-tuned one: the bench measures speed, not accuracy), then, on one local Ray:

1. **pipeline**: the app of ``serve_config.yaml`` (its deployment options: Api -> Analyzer -> Judge with
   ``@serve.batch``): sparse decode, segment features, scorer, focused allocation of ``--budget`` frames,
   the VLM on those frames;
2. **naive**: one deployment (two replicas) that decodes *every* frame, takes ``--budget`` uniformly spaced
   ones and judges them with the same VLM (:class:`~dualvad.detector.FrameJudge`), one request at a time.

The corpus is by default the UCF-like one (:mod:`dualvad.corpus.ucf_like`: 320x240 30-fps videos of 1 to 8
minutes with x264's default GOP, and two 1280x720 ones; generated once, ~10 minutes of one core, cached
under ``bench/out/ucf-like/``; ``--scale``/``--videos`` shrink it); ``--corpus short`` is the older one
(``--videos`` videos of ``--seconds`` at ``--width`` x ``--height``, a keyframe every second).

For each it sends a fixed number of JSON requests at concurrency 1, 4 and 16 (a bounded loopback load
generator) and prints p50/p95/p99 latency, requests/s and errors. Then the Judge's frames/s with and
without batching, in process: :meth:`FrameJudge.judge_many` over 8 requests against 8 ``judge`` calls.

Targets (issue 13): zero errors; p99 at concurrency 16 within 3x of p50 at concurrency 1 once scaled (a
machine that serves T requests/s with 16 in flight cannot do better than 16 / T s per request: printed
beside it as this machine's floor); the pipeline's latency below the naive baseline's at equal budget.

    python bench/serve.py [--scale 0.25] [--requests 32] [--device cuda]
    python bench/serve.py --corpus short [--videos 16] [--seconds 60] [--width 640 --height 480]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import socket
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import yaml
from PIL import Image
from ray import serve
from starlette.requests import Request

from common import OUT, detect_run, prepared_run, ucf_like_arguments, ucf_like_corpus, ucf_like_spec

ROOT = Path(__file__).resolve().parent.parent
CONCURRENCY = (1, 4, 16)


@dataclasses.dataclass
class LoadResult:
    """One load level: latencies (s) of the successful requests, statuses of the failed ones."""

    concurrency: int
    latencies: list[float]
    errors: list[str]
    wall_s: float
    timings_ms: list[dict[str, float]]  # each response's own timings (the pipeline's; {} for the naive one)

    def row(self, system: str) -> str:
        p50, p95, p99 = (percentile(self.latencies, q) for q in (50, 95, 99))
        rate = len(self.latencies) / self.wall_s
        return (f"| {system} | {self.concurrency} | {len(self.latencies) + len(self.errors)} | {p50:.2f} | "
                f"{p95:.2f} | {p99:.2f} | {rate:.2f} | {len(self.errors)} |")


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (linear interpolation; NaN when empty)."""
    return float(np.percentile(values, q)) if values else float("nan")


def main() -> None:
    args = _args()
    logging.basicConfig(level=logging.WARNING)
    config, corpus = _prepare(args)
    videos = sorted(str(p) for p in Path(corpus, "videos").rglob("*.mp4"))
    tiny = _tiny_vlm(Path(config.run).parent)
    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port, "request_timeout_s": 300})
    base = f"http://127.0.0.1:{port}"
    results = {"pipeline": _bench_pipeline(config, tiny, videos, base, args),
               "naive": _bench_naive(config, tiny, videos, base, args)}
    serve.shutdown()
    _print_load(results, args)
    _print_batching(config, tiny, videos, args)


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ucf_like_arguments(parser)
    parser.add_argument("--seconds", type=float, default=60.0, help="--corpus short: length of each video")
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--budget", type=int, default=16, help="frames judged per video, both systems")
    parser.add_argument("--requests", type=int, default=32, help="requests per concurrency level")
    parser.add_argument("--explain", action="store_true", help="ask for clip explanations (both systems)")
    parser.add_argument("--device", default="cpu", help="torch device of the VLM (cuda on a GPU machine)")
    parser.add_argument("--judge-gpus", type=float, default=0.0, help="num_gpus of each Judge replica")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray")
    parser.add_argument("--seed", type=int, default=11)
    return parser.parse_args()


def _prepare(args: argparse.Namespace):
    """The run the app serves: ingest (prepared_run), scorer, scores, samples, benchmarks' records."""
    from dualvad.corpus import SynthSpec, generate_corpus
    from dualvad.pipeline.build_benchmarks import run_build_benchmarks
    from dualvad.pipeline.sample import run_sample
    from dualvad.pipeline.score import run_score
    from dualvad.train.train_scorer import run_train_scorer

    if args.corpus == "ucf-like":
        corpus = ucf_like_corpus(ucf_like_spec(args))  # seed 0, as bench/detect.py and bench/ingest.py
        # the run bench/detect.py prepares (same settings): prepared once for both
        return detect_run(f"detect-{corpus.parent.name}", corpus, args.budget, args.cpus), corpus
    name = f"serve-{args.width}x{args.height}"
    folder = OUT / name / f"{args.videos}x{args.seconds:g}s-seed{args.seed}"
    if not (folder / "corpus" / "annotations").is_dir():  # prepared_run's corpus, at this resolution
        generate_corpus(folder / "corpus", SynthSpec(videos=args.videos, seconds=args.seconds, seed=args.seed,
                                                     width=args.width, height=args.height, test_share=0.5))
    overrides = ["scorer.epochs=20", "scorer.report_every=10", f"sample.budget={args.budget}",
                 "benchmarks.image_size=112", "benchmarks.clip_frames=8", "benchmarks.shards=1",
                 f"ray.num_cpus={args.cpus}"]
    config, corpus = prepared_run(name, args.videos, args.seconds, args.seed, overrides)
    for stage in (run_train_scorer, run_score, run_sample, run_build_benchmarks):
        print(stage(config))
    return config, corpus


def _tiny_vlm(folder: Path) -> str:
    from dualvad.vlm.model import save_tiny_model

    target = folder / "tiny-vlm"
    return str(target if (target / "config.json").exists() else save_tiny_model(target))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ------------------------------------------------------------------------------------------ load


def run_load(url: str, bodies: list[dict], concurrency: int) -> LoadResult:
    """POST every body of ``bodies`` to ``url`` as JSON, ``concurrency`` at a time (one httpx client per
    worker thread); a non-200 answer or a transport error counts as an error, with its status."""
    def send(body: dict, client: httpx.Client) -> tuple[float | None, str | None]:
        started = time.perf_counter()
        try:
            response = client.post(url, json=body)
        except httpx.HTTPError as error:
            return None, type(error).__name__
        if response.status_code != 200:
            return None, str(response.status_code)
        timings.append(response.json().get("timings_ms", {}))
        return time.perf_counter() - started, None

    timings: list[dict[str, float]] = []
    clients = [httpx.Client(timeout=300) for _ in range(concurrency)]
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        outcomes = list(pool.map(lambda i: send(bodies[i], clients[i % concurrency]), range(len(bodies))))
    wall = time.perf_counter() - started
    for client in clients:
        client.close()
    return LoadResult(concurrency, [t for t, _ in outcomes if t is not None],
                      [e for _, e in outcomes if e is not None], wall, timings)


def _levels(system: str, url: str, videos: list[str], args: argparse.Namespace) -> list[LoadResult]:
    bodies = [{"uri": videos[i % len(videos)], "explain": args.explain} for i in range(args.requests)]
    run_load(url, bodies[:2], 1)  # warm-up: first requests load lazily-built state in every replica
    results = []
    for concurrency in CONCURRENCY:
        results.append(run_load(url, bodies, concurrency))
        print(results[-1].row(system), flush=True)
    return results


# ------------------------------------------------------------------------------------------ systems


def _yaml_options() -> dict[str, dict[str, Any]]:
    """serve_config.yaml's per-deployment options (what `serve run` applies), by deployment name."""
    app = yaml.safe_load((ROOT / "serve_config.yaml").read_text())["applications"][0]
    return {d["name"]: {k: v for k, v in d.items() if k != "name"} for d in app["deployments"]}


def _bench_pipeline(config, tiny: str, videos: list[str], base: str, args) -> list[LoadResult]:
    from dualvad.serve.app import compose
    from dualvad.serve.settings import AppArgs

    options = _yaml_options()
    options["Judge"]["ray_actor_options"]["num_gpus"] = args.judge_gpus
    app_args = AppArgs(run=config.run, vlm=tiny, device=args.device, allowed_roots=[str(config.corpus)],
                       request_timeout_s=300, max_duration_s=3600)
    started = time.perf_counter()
    serve.run(compose(app_args, api=options["Api"], analyzer=options["Analyzer"], judge=options["Judge"]),
              name="dualvad", route_prefix="/")
    print(f"pipeline deployed in {time.perf_counter() - started:.0f} s", flush=True)
    results = _levels("pipeline", f"{base}/v1/detect", videos, args)
    batches = httpx.get(f"{base}/v1/info", timeout=30).json()["models"]["judge"]["batch_sizes"]
    print(f"pipeline: the Judge's batch sizes seen (size: count): {batches}")
    serve.delete("dualvad")
    return results


def _bench_naive(config, tiny: str, videos: list[str], base: str, args) -> list[LoadResult]:
    started = time.perf_counter()
    app = NaiveDetector.options(ray_actor_options={"num_cpus": 0.75, "num_gpus": args.judge_gpus}).bind(
        config.run, tiny, args.budget, args.device, args.explain)
    serve.run(app, name="naive", route_prefix="/naive")
    print(f"naive deployed in {time.perf_counter() - started:.0f} s", flush=True)
    results = _levels("naive", f"{base}/naive/detect", videos, args)
    serve.delete("naive")
    return results


@serve.deployment(num_replicas=2, max_ongoing_requests=1)
class NaiveDetector:
    """The baseline: decode every frame, judge ``budget`` uniformly spaced ones with the same VLM; no
    segment scorer, no batching, one request per replica at a time."""

    def __init__(self, run: str, vlm: str, budget: int, device: str, explain: bool) -> None:
        from dualvad.detector import FrameJudge, RunSettings
        from dualvad.rundir import open_run

        self.settings = RunSettings.from_run(open_run(run))
        self.judge = FrameJudge.from_run(run, vlm=vlm, device=device)
        self.budget, self.explain = budget, explain

    async def __call__(self, request: Request) -> dict:
        path = (await request.json())["uri"]
        return await asyncio.to_thread(self.detect, path)

    def detect(self, path: str) -> dict:
        jpegs = naive_frames(path, self.budget, self.settings.image_size, self.settings.jpeg_quality)
        judgement = self.judge.judge(jpegs, self.explain)
        return {"frames": len(jpegs), "p_yes": [float(p) for p in judgement.frame_scores]}


def naive_frames(path: str, budget: int, longest: int, quality: int) -> list[bytes]:
    """JPEGs of ``budget`` uniformly spaced frames of the video at ``path``, after decoding all of them at
    the file's resolution and converting each to RGB (the cost the baseline stands for), resized so the
    longer side is ``longest``. PyAV, one frame in memory at a time: decord's ``get_batch`` kept every frame
    it returned (20 GB for 4 minutes at 1280x720)."""
    import av

    from dualvad.video.gop import frame_size
    from dualvad.video.jpeg import encode_jpeg

    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        chosen = set(np.linspace(0, stream.frames - 1, budget).round().astype(np.int64).tolist())
        kept = []
        for index, frame in enumerate(container.decode(stream)):
            rgb = frame.to_ndarray(format="rgb24")  # every frame converted: the baseline's cost
            if index in chosen:
                kept.append(rgb)
    height, width = kept[0].shape[:2]
    size = frame_size(width, height, longest)
    return [encode_jpeg(np.asarray(Image.fromarray(frame).resize(size, Image.BILINEAR)), quality)
            for frame in kept]


# ------------------------------------------------------------------------------------------ report


def _print_load(results: dict[str, list[LoadResult]], args: argparse.Namespace) -> None:
    print(f"\n## Load: {args.requests} requests per level, budget {args.budget}, explain {args.explain}, "
          f"{os.cpu_count()} CPUs, VLM on {args.device}\n")
    print("| system | concurrency | requests | p50 s | p95 s | p99 s | req/s | errors |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for system, levels in results.items():
        for level in levels:
            print(level.row(system))
    for system, levels in results.items():
        by = {level.concurrency: level for level in levels}
        p50_1, p99_16 = percentile(by[1].latencies, 50), percentile(by[16].latencies, 99)
        throughput = len(by[16].latencies) / by[16].wall_s
        in_flight = min(16, args.requests)
        floor = in_flight / throughput  # Little's law: N in flight at T req/s take N / T s each on average
        print(f"{system}: p99@16 / (16 x p50@1) = {p99_16 / (16 * p50_1):.2f} (issue 30: printed; 1.0 = "
              "16 requests served one after the other)")
        print(f"{system}: p99@16 / p50@1 = {p99_16 / p50_1:.1f} (target <= 3 once scaled); this machine's "
              f"floor {floor / p50_1:.1f} ({in_flight} in flight at {throughput:.2f} req/s take >= "
              f"{floor:.1f} s on average)")
    stages = results["pipeline"][0].timings_ms
    means = {key: statistics.fmean(t[key] for t in stages if key in t) for key in stages[0]} if stages else {}
    print("pipeline at concurrency 1, mean ms per stage: "
          + ", ".join(f"{key} {value:.0f}" for key, value in means.items()))
    pipeline, naive = (percentile(results[name][0].latencies, 50) for name in ("pipeline", "naive"))
    print(f"p50 at concurrency 1: pipeline {pipeline:.2f} s, naive {naive:.2f} s "
          f"(pipeline / naive = {pipeline / naive:.2f})")


def _print_batching(config, tiny: str, videos: list[str], args: argparse.Namespace) -> None:
    """frames/s of the Judge's VLM pass over 8 requests: one shared judge_many against 8 judge calls."""
    from dualvad.detector import FrameJudge, SegmentAnalyzer
    from dualvad.detector_schema import DetectOptions

    analyzer = SegmentAnalyzer.from_run(config.run)
    judge = FrameJudge.from_run(config.run, vlm=tiny, device=args.device)
    requests = [(analyzer.analyze(videos[i % len(videos)], DetectOptions()).jpegs, False) for i in range(8)]
    frames = sum(len(jpegs) for jpegs, _ in requests)
    judge.judge_many(requests[:1])  # warm-up
    timed = {}
    for name, work in (("one request per call", lambda: [judge.judge(j, e) for j, e in requests]),
                       ("8 requests batched", lambda: judge.judge_many(requests))):
        started = time.perf_counter()
        work()
        timed[name] = frames / (time.perf_counter() - started)
    print(f"\n## Judge (frame P(Yes) only, {frames} frames of 8 requests, VLM batch size "
          f"{judge.vlm.batch_size})\n")
    for name, rate in timed.items():
        print(f"- {name}: {rate:.1f} frames/s")
    print(f"- batched / unbatched: {timed['8 requests batched'] / timed['one request per call']:.2f}")


if __name__ == "__main__":
    main()
