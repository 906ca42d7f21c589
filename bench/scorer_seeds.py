"""The scorer's quality over many training seeds, in one process: settings compared side by side.

On a few dozen training videos one seed's figure moves by up to 0.5 frame AUC, so a setting is judged over
many seeds, and the pipeline (Ray Train: ~40 s a seed here) is too slow for that. This trains the scorer on
a run's ingested segments with the stage's own loop (``dualvad.train.train_scorer.train_in_process``: same
model, loss, validation split, seeding per (seed, epoch) and checkpoint ``last``; a seed gives the
pipeline's scorer to the digit) and scores the test split, for each ``--seeds`` seed and each variant.

For each variant and seed it prints the frame-level AUC over the test videos and per category (that
category's test videos and every normal one), the video-level AUC (a video's highest segment score) and
"verdict right": the share of test videos the scorer-only verdict gets right, fitted on the held-out
validation videos as ``dualvad evaluate`` fits it. Then each variant's mean and standard deviation.

    python bench/scorer_seeds.py --run RUN --corpus CORPUS                       # the defaults, 20 seeds
    python bench/scorer_seeds.py --run RUN --corpus CORPUS --variant ensemble=1 --variant ensemble=5
    python bench/real_footage.py                              # a run to give it: the real-footage corpus
    python bench/scorer_seeds.py --run bench/out/real_footage/seed0-100f-12n-6k/run \\
        --corpus bench/out/real_footage/seed0-100f-12n-6k/corpus --variant ensemble=1 --variant default

A variant is ``default`` or comma-separated ``key=value`` settings of ``scorer.*`` (``ensemble=5,lr=1e-3``),
checked as the config checks them. The ``scorer.checkpoint=val_loss`` rule is not run here (a variant
asking for it is refused).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, replace

import numpy as np
import torch


@dataclass(frozen=True)
class SeedResult:
    frame_auc: float
    by_category: dict[str, float]
    video_auc: float
    verdict_right: float  # share of test videos, in [0, 1]
    seconds: float


def main() -> None:
    args = _args()
    torch.set_num_threads(args.threads)
    data = _TestData.load(args.run, args.corpus)
    results = {}
    for variant in args.variant or ["default"]:
        settings = _settings(variant)
        results[variant] = []
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            result = _one_seed(replace(settings, seed=seed), data)
            results[variant].append(result)
            print(f"{variant} seed {seed}: {_line(result)}", flush=True)
    _print_table(results)


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="a run directory with ingested segments")
    parser.add_argument("--corpus", required=True, help="its corpus (the test split's temporal annotations)")
    parser.add_argument("--variant", action="append", help="`default` or `key=value,...` of scorer.* "
                        "(repeatable; default: the defaults)")
    parser.add_argument("--seeds", type=int, default=20, help="training seeds per variant")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    return parser.parse_args()


def _settings(variant: str):
    """The scorer config of a variant (the defaults with its ``key=value`` settings, validated)."""
    from dualvad.config import load_config

    overrides = [] if variant == "default" else [f"scorer.{item}" for item in variant.split(",")]
    settings = load_config(None, overrides).scorer
    if settings.checkpoint != "last":
        raise SystemExit(f"variant {variant!r}: only scorer.checkpoint=last is run in process")
    return settings


@dataclass
class _TestData:
    """A run's segments as the scorer sees them, and the test videos' annotations."""

    videos: object  # VideoSet of every video
    records: list  # the corpus's test records with temporal annotations
    rows: dict[str, int]  # video id -> row of ``videos``
    ingest: object  # the IngestConfig the segments were ingested with (their cue groups)

    @staticmethod
    def load(run: str, corpus: str) -> _TestData:
        from dualvad import paths
        from dualvad.corpus import read_corpus
        from dualvad.rundir import open_run
        from dualvad.scorer.data import video_set_from_segments
        from dualvad.stages.recorded import recorded_ingest_settings

        run_dir = open_run(run)
        videos = video_set_from_segments(run_dir.read_table(paths.SEGMENTS))
        records = [r for r in read_corpus(corpus) if r.split == "test" and r.intervals is not None]
        return _TestData(videos, records, {video: i for i, video in enumerate(videos.video_ids)},
                         recorded_ingest_settings(run_dir))


def _one_seed(settings, data: _TestData) -> SeedResult:
    """Train with ``settings`` (its seed) as train-scorer does, score the test videos and measure."""
    from dualvad.scorer.data import held_out_validation, labelled_training_videos, scoring_features
    from dualvad.train.train_scorer import train_in_process

    started = time.perf_counter()
    train, val = held_out_validation(labelled_training_videos(data.videos.split("train")), settings.val_share,
                                     settings.seed)
    if val is None:
        raise SystemExit("the train split is too small to hold out validation videos of both classes")
    scorer = train_in_process(settings, train, data.ingest)
    scores = scorer.score(scoring_features(data.videos, settings.test_crop))
    val_scores = scorer.score(scoring_features(val, settings.test_crop)).max(axis=1)
    return _measure(data, scores, val_scores, val.labels, time.perf_counter() - started)


def _measure(data: _TestData, scores: np.ndarray, val_scores: np.ndarray, val_labels: np.ndarray,
             seconds: float) -> SeedResult:
    """Frame AUC (all, per category), video AUC and the fitted verdict's share right on the test videos."""
    from dualvad.eval.metrics import frame_auc, video_auc
    from dualvad.eval.verdict import apply, fit_verdict

    def auc(records) -> float:
        rows = [(data.rows[r.video_id], r.intervals) for r in records]
        return frame_auc((scores[row], data.videos.bounds[row], intervals) for row, intervals in rows)

    test = data.records
    categories = sorted({r.label for r in test if r.is_anomalous})
    labels = np.array([r.is_anomalous for r in test], np.int8)
    highest = np.array([scores[data.rows[r.video_id]].max() for r in test])
    neutral = 0.5  # no VLM here: a constant VLM score gets weight 0 in the fit
    verdict = fit_verdict(val_scores, np.full(len(val_scores), neutral), val_labels)
    decisions = apply(verdict, highest, neutral) >= verdict.threshold
    return SeedResult(auc(test), {c: auc(r for r in test if r.label == c or not r.is_anomalous)
                                  for c in categories},
                      video_auc(labels, highest), float((decisions == labels).mean()), seconds)


def _line(result: SeedResult) -> str:
    kinds = " ".join(f"{name} {value:.3f}" for name, value in result.by_category.items())
    return (f"frame AUC {result.frame_auc:.3f} ({kinds}), video AUC {result.video_auc:.3f}, verdict right "
            f"{100 * result.verdict_right:.1f} %, {result.seconds:.1f} s")


def _print_table(results: dict[str, list[SeedResult]]) -> None:
    """One row per variant: means over its seeds (frame AUC with its standard deviation)."""
    categories = list(next(iter(results.values()))[0].by_category)
    print(f"\n| variant | seeds | frame AUC | {' | '.join(categories)} | video AUC | verdict right "
          "| s a seed |")
    print("|---|---:|---:|" + "---:|" * len(categories) + "---:|---:|---:|")
    for variant, rows in results.items():
        frame = np.array([row.frame_auc for row in rows])
        kinds = " | ".join(f"{np.mean([row.by_category[c] for row in rows]):.3f}" for c in categories)
        print(f"| {variant} | {len(rows)} | {frame.mean():.3f} +- {frame.std():.3f} | {kinds} | "
              f"{np.mean([row.video_auc for row in rows]):.3f} | "
              f"{100 * np.mean([row.verdict_right for row in rows]):.1f} % | "
              f"{np.mean([row.seconds for row in rows]):.1f} |")


if __name__ == "__main__":
    main()
