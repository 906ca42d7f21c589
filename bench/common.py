"""Shared set-up of the benchmarks: a generated corpus, ingested, with a trained scorer; the UCF-like one."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "out"


def prepared_run(name: str, videos: int, seconds: float, seed: int, overrides: list[str], cameras: int = 0):
    """Generate (once) a corpus (``cameras``: ``synth.cameras``) and ingest it (once) into
    ``bench/out/<name>/<corpus>/run``.

    Returns (config, corpus path); Ray is started with 2 CPUs and quiet progress bars.
    """
    import ray

    from dualvad.config import load_config
    from dualvad.corpus import SynthSpec, generate_corpus
    from dualvad.pipeline.ingest import run_ingest
    from dualvad.pipeline.runtime import ensure_ray

    folder = OUT / name / f"{videos}x{seconds:g}s-seed{seed}{f'-cam{cameras}' if cameras else ''}"
    corpus = folder / "corpus"
    if not (corpus / "annotations").is_dir():
        generate_corpus(corpus, SynthSpec(videos=videos, seconds=seconds, seed=seed, cameras=cameras))
    config = load_config(None, [f"corpus={corpus}", f"run={folder / 'run'}", "ray.num_cpus=2", *overrides])
    ensure_ray(config.ray)
    ray.data.DataContext.get_current().enable_progress_bars = False
    print(run_ingest(config))
    return config, corpus


def ucf_like_corpus(spec, parallel: int = 1) -> Path:
    """The UCF-like corpus of ``spec`` (a :class:`dualvad.corpus.ucf_like.UcfLikeSpec`), generated once into
    ``bench/out/ucf-like/<key>/corpus``, the key naming the spec (its settings' hash), ``parallel`` videos
    at a time. Generating is slow: about 2.2 ms of one core per 320 x 240 frame and 21 ms per 1280 x 720
    frame (drawing and x264), so the default spec (16 videos of 1-8 minutes, mean 4, and two of 4 minutes
    at 1280 x 720) takes ~10 minutes of one core; ``--scale`` and ``--videos`` shrink it."""
    from dualvad.corpus.ucf_like import generate_ucf_like

    settings = dataclasses.asdict(spec)
    digest = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
    folder = OUT / "ucf-like" / f"{spec.videos}+{spec.hd_videos}hd-x{spec.scale:g}-seed{spec.seed}-{digest}"
    corpus = folder / "corpus"
    if not (corpus / "annotations").is_dir():
        print(f"generating the UCF-like corpus {corpus} ({settings}) ...", flush=True)
        started = time.perf_counter()
        generate_ucf_like(corpus, spec, processes=parallel,
                          progress=lambda done, total: print(f"  {done}/{total} videos", flush=True))
        print(f"generated in {time.perf_counter() - started:.0f} s", flush=True)
    return corpus


def ucf_like_arguments(parser: argparse.ArgumentParser, videos: int = 16) -> None:
    """Add the UCF-like corpus's options (``--corpus``, ``--videos``, ``--hd-videos``, ``--scale``)."""
    parser.add_argument("--corpus", choices=("ucf-like", "short"), default="ucf-like",
                        help="ucf-like: 320x240 30-fps videos of 1-8 minutes with x264's default GOP plus "
                             "1280x720 ones (default); short: the older corpus of equal short videos")
    parser.add_argument("--videos", type=int, default=videos, help="320x240 videos of the UCF-like corpus "
                        "(with --corpus short: its videos)")
    parser.add_argument("--hd-videos", type=int, default=2, help="1280x720 videos of the UCF-like corpus")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="the UCF-like corpus's lengths times this (0.25: mean 1 minute)")


def ucf_like_spec(args: argparse.Namespace, seed: int = 0):
    """The :class:`~dualvad.corpus.ucf_like.UcfLikeSpec` of :func:`ucf_like_arguments`' options."""
    from dualvad.corpus.ucf_like import UcfLikeSpec

    return UcfLikeSpec(videos=args.videos, hd_videos=args.hd_videos, scale=args.scale, seed=seed)


def detect_run(name: str, corpus: Path, budget: int, cpus: int = 2, image_size: int = 112,
               overrides: tuple[str, ...] = ()):
    """A run the detector can serve, on ``corpus`` (its own folder ``bench/out/<name>/run``): ingest, a
    20-epoch scorer, scores, samples of ``budget`` frames, benchmarks' records (``image_size`` px, clips of
    8 frames), each skipped where done; ``overrides``: more config overrides. Returns its config; Ray runs
    with ``cpus`` CPUs."""
    import ray

    from dualvad.config import load_config
    from dualvad.pipeline.build_benchmarks import run_build_benchmarks
    from dualvad.pipeline.ingest import run_ingest
    from dualvad.pipeline.runtime import ensure_ray
    from dualvad.pipeline.sample import run_sample
    from dualvad.pipeline.score import run_score
    from dualvad.train.train_scorer import run_train_scorer

    settings = ["scorer.epochs=20", "scorer.report_every=10", f"sample.budget={budget}",
                f"benchmarks.image_size={image_size}", "benchmarks.clip_frames=8", "benchmarks.shards=1",
                f"ray.num_cpus={cpus}", *overrides]
    config = load_config(None, [f"corpus={corpus}", f"run={OUT / name / 'run'}", *settings])
    ensure_ray(config.ray)
    ray.data.DataContext.get_current().enable_progress_bars = False
    for stage in (run_ingest, run_train_scorer, run_score, run_sample, run_build_benchmarks):
        print(stage(config), flush=True)
    return config


def ffmpeg_binary() -> str:
    """The ``ffmpeg`` on PATH, else imageio-ffmpeg's (a dependency)."""
    import shutil

    found = shutil.which("ffmpeg")
    if found:
        return found
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def variant_run(config, name: str, overrides: list[str]):
    """A run beside ``config.run`` sharing its segments (a symlink), with other settings."""
    from dualvad.config import load_config

    base = Path(config.run)
    run = base.parent / name
    run.mkdir(parents=True, exist_ok=True)
    if not (run / "segments").exists():
        os.symlink(base / "segments", run / "segments")
    return load_config(None, [f"corpus={config.corpus}", "ray.num_cpus=2", *overrides, f"run={run}"])


def corpus_arguments(description: str, videos: int = 80) -> argparse.ArgumentParser:
    """A parser with the generated corpus and scorer options the benchmarks share."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--videos", type=int, default=videos)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--epochs", type=int, default=40, help="scorer training epochs")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--cameras", type=int, default=0, help="synth.cameras (0: a scene per video)")
    return parser


def scored_test_videos(run: Path, corpus: Path) -> tuple[list, dict, dict]:
    """The corpus's test videos with temporal annotations (records), and each video's segment scores
    (float (K,)) and frame bounds (int (K, 2)) from the run's scores and segments, by video id."""
    from dualvad import schema as S
    from dualvad.corpus import read_corpus
    from dualvad.rundir import open_run
    from dualvad.scorer.data import video_set_from_segments

    run_dir = open_run(str(run))
    videos = video_set_from_segments(run_dir.read_table("segments"))
    scores = run_dir.read_table("scores").sort_by([(S.VIDEO_ID, "ascending"), (S.SEGMENT_INDEX, "ascending")])
    by_video = dict(zip(videos.video_ids, scores[S.SCORE].to_numpy().reshape(len(videos), -1), strict=True))
    bounds = dict(zip(videos.video_ids, videos.bounds, strict=True))
    test = [r for r in read_corpus(corpus) if r.split == "test" and r.intervals is not None]
    return test, by_video, bounds


def frame_aucs(run: Path, corpus: Path) -> tuple[float, dict[str, float]]:
    """Frame-level AUC over the test videos with temporal annotations, and per anomaly category
    (that category's test videos and all normal ones)."""
    from dualvad.eval.metrics import frame_auc

    test, by_video, bounds = scored_test_videos(run, corpus)

    def auc(records) -> float:
        return frame_auc((by_video[r.video_id], bounds[r.video_id], r.intervals) for r in records)

    categories = sorted({r.label for r in test if r.is_anomalous})
    return auc(test), {c: auc(r for r in test if r.label == c or not r.is_anomalous) for c in categories}


def run_video_auc(run: Path, corpus: Path) -> float:
    """Video-level AUC over the test videos, a video scored by its highest segment score."""
    from dualvad.eval.metrics import video_auc

    test, by_video, _ = scored_test_videos(run, corpus)
    labels = np.array([r.is_anomalous for r in test], dtype=np.int8)
    return video_auc(labels, np.array([by_video[r.video_id].max() for r in test]))


def print_seed_table(rows: list) -> None:
    """rows of (seed, frame AUC, {kind: frame AUC}, video AUC, seconds): one line a seed, then mean and
    std when there are several."""
    kinds = sorted(rows[0][2])
    print(f"\n{'scorer seed':<12} {'frame AUC':>9}" + "".join(f" {k:>11}" for k in kinds)
          + f" {'video AUC':>9} {'train+score s':>13}")
    for seed, overall, by_kind, video, seconds in rows:
        print(f"{seed:<12} {overall:9.3f}" + "".join(f" {by_kind[k]:11.3f}" for k in kinds)
              + f" {video:9.3f} {seconds:13.1f}")  # ~0 s: found done
    if len(rows) > 1:
        for name, reduce in (("mean", np.mean), ("std", np.std)):
            print(f"{name:<12} {reduce([row[1] for row in rows]):9.3f}"
                  + "".join(f" {reduce([row[2][k] for row in rows]):11.3f}" for k in kinds)
                  + f" {reduce([row[3] for row in rows]):9.3f}")
