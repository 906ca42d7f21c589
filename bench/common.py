"""Shared set-up of the benchmarks: a generated corpus, ingested, with a trained scorer."""

from __future__ import annotations

import argparse
import os
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
