"""Where each sampling strategy puts its frames, side by side in one run.

On a generated corpus (train split to train the RefineVAD scorer, test split with temporal
annotations to evaluate), prints for each strategy (focused, uniform, random, cdf) and
budget N in {8, 16, 32}:
  * anomaly hit rate: the share of selected frames inside annotated anomalies, over the
    anomalous test videos;
  * segment coverage: the share of the K segments that get at least one frame;
and the cost of one allocation (K=32, microseconds per video).

Targets (issue 5): focused hits more than uniform and random at every budget, and covers
every segment when N >= K; allocation < 100 microseconds per video.

    python bench/sampling.py
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from dualvad.corpus import read_corpus
from dualvad.pipeline.score import run_score
from dualvad.rundir import open_run
from dualvad.scorer.data import video_set_from_segments
from dualvad.train.train_scorer import run_train_scorer
from dualvad.video.sampling import STRATEGIES, allocate

from common import corpus_arguments, prepared_run

BUDGETS = (8, 16, 32)


def main() -> None:
    args = _args()
    config, corpus = prepared_run(f"sampling-K{args.segments}", args.videos, args.seconds, args.seed,
                                  [f"scorer.epochs={args.epochs}", "scorer.report_every=5",
                                   f"ingest.segments={args.segments}"], cameras=args.cameras)
    if not open_run(config.run).exists("scorer", "model"):
        print(run_train_scorer(config))
    print(run_score(config))
    videos, scores = _test_videos(config, corpus)
    print(f"\n{len(videos)} anomalous test videos, K = {videos[0][1].shape[0]} segments")
    print(f"{'strategy':<9} {'N':>3} {'hit rate':>9} {'coverage':>9}")
    oracle = _oracle_scores(videos)
    for budget in BUDGETS:
        for strategy in STRATEGIES:
            hit, coverage = _evaluate(strategy, budget, videos, scores, args.tau)
            print(f"{strategy:<9} {budget:>3} {hit:9.3f} {coverage:9.3f}")
        hit, coverage = _evaluate("focused", budget, videos, oracle, args.tau)
        print(f"{'oracle*':<9} {budget:>3} {hit:9.3f} {coverage:9.3f}")
    print("* focused allocation fed the annotation itself (each segment's anomalous share) instead of "
          "the trained scorer: the reference for what a perfect scorer would give")
    print(f"\nfocused allocation cost: {_cost_us(args.tau):.1f} us per video (K=32, N=16; target < 100)")


def _args() -> argparse.Namespace:
    parser = corpus_arguments(__doc__.split("\n\n")[0])
    parser.add_argument("--tau", type=float, default=0.1)
    parser.add_argument("--segments", type=int, default=16, help="K (N=8 < K, N=16 = K, N=32 > K)")
    return parser.parse_args()


def _test_videos(config, corpus):
    """[(video id, bounds (K, 2), intervals)] of anomalous annotated test videos, and their scores."""
    from dualvad import schema as S

    run = open_run(config.run)
    videos = video_set_from_segments(run.read_table("segments"))
    table = run.read_table("scores").sort_by([(S.VIDEO_ID, "ascending"), (S.SEGMENT_INDEX, "ascending")])
    scores = dict(zip(videos.video_ids, table[S.SCORE].to_numpy().reshape(len(videos), -1), strict=True))
    bounds = dict(zip(videos.video_ids, videos.bounds, strict=True))
    annotated = [r for r in read_corpus(corpus) if r.split == "test" and r.intervals]
    return [(r.video_id, bounds[r.video_id], r.intervals) for r in annotated], scores


def _oracle_scores(videos) -> dict:
    """Reference scores from the annotation itself (share of each segment inside an anomaly):
    what the allocation does with a perfect scorer, to read the trained scorer's rows against."""
    scores = {}
    for video_id, bounds, intervals in videos:
        inside = np.zeros(int(bounds[-1, 1]), dtype=bool)
        for start, end in intervals:
            inside[start:end] = True
        scores[video_id] = np.add.reduceat(inside, bounds[:, 0]) / (bounds[:, 1] - bounds[:, 0])
    return scores


def _evaluate(strategy: str, budget: int, videos, scores, tau: float) -> tuple[float, float]:
    hits = selected = covered = segments = 0
    for video_id, bounds, intervals in videos:
        allocation = allocate(strategy, scores[video_id], bounds, budget, tau=tau, seed=7)
        frames = allocation.frames
        hits += sum(int(((frames >= s) & (frames < e)).sum()) for s, e in intervals)
        selected += len(frames)
        covered += int((allocation.per_segment > 0).sum())
        segments += len(bounds)
    return hits / selected, covered / segments


def _cost_us(tau: float) -> float:
    from dualvad.video.sampling import focused
    from dualvad.video.segments import segment_bounds

    rng = np.random.default_rng(0)
    cases = [(rng.random(32), segment_bounds(int(rng.integers(300, 20000)), 32)) for _ in range(200)]
    for scores, bounds in cases[:20]:
        focused(scores, bounds, 16, tau=tau)
    started = time.perf_counter()
    for scores, bounds in cases:
        focused(scores, bounds, 16, tau=tau)
    return (time.perf_counter() - started) / len(cases) * 1e6


if __name__ == "__main__":
    main()
