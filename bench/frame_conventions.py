"""Plain frame-level AUC under two conventions, on a generated corpus (issue 14).

Generates a corpus, ingests it, trains the RefineVAD scorer and scores every segment, then computes the
frame AUC of the scorer's segment scores over the test split three ways:

  * ours (``dualvad evaluate``'s "Frame AUC"): every frame of every video, each segment's score repeated
    over its frames, ground truth from the half-open ``[start, end)`` annotations;
  * 16 T truncation, the convention of RTFM, UR-DMU and VadCLIP (one score per 16-frame I3D snippet,
    ``np.repeat(scores, 16)``, ground truth over the same ``16 T`` frames): each video keeps its first
    ``16 T`` frames, ``T = floor(L / 16)`` whole snippets; the same frame scores as ours;
  * 16 T with snippet scores: as above, and each snippet's frames take the mean of its frame scores (the
    curve a snippet-level model gives: 16-frame resolution on top of the truncation).

    python bench/frame_conventions.py [--videos 48] [--seconds 4] [--seed 11]

The defaults are ``bench/evaluate.py``'s corpus: 4 s at 15 fps = 60 frames a video, so ``16 T = 48`` and
the truncation drops the last 12 frames (20 %) of every video.
"""

from __future__ import annotations

import time

import numpy as np
from sklearn.metrics import roc_auc_score

from dualvad import schema as S
from dualvad.eval.metrics import frame_ground_truth, segment_scores_to_frames
from dualvad.pipeline.sample import segments_with_scores
from dualvad.pipeline.score import run_score
from dualvad.rundir import open_run
from dualvad.train.train_scorer import run_train_scorer

from common import corpus_arguments, prepared_run

SNIPPET = 16  # frames per I3D snippet


def main() -> None:
    args = _args()
    started = time.perf_counter()
    config, _ = prepared_run("frame-conventions", args.videos, args.seconds, args.seed,
                             [f"ingest.segments={args.segments}", f"scorer.epochs={args.epochs}"],
                             cameras=args.cameras)
    print(run_train_scorer(config))
    print(run_score(config))
    videos = _test_videos(config.run)
    curves = {"ours (all frames)": [], "16 T truncation": [], "16 T with snippet scores": []}
    for scores, bounds, frames, intervals in videos:
        kept = SNIPPET * (frames // SNIPPET)
        truth = frame_ground_truth(frames, intervals)
        ours = segment_scores_to_frames(scores, bounds)
        snippets = np.repeat(ours[:kept].reshape(-1, SNIPPET).mean(axis=1), SNIPPET)
        curves["ours (all frames)"].append((truth, ours))
        curves["16 T truncation"].append((truth[:kept], ours[:kept]))
        curves["16 T with snippet scores"].append((truth[:kept], snippets))
    frames = sum(v[2] for v in videos)
    print(f"\n{len(videos)} test videos, {frames} frames; 16 T keeps "
          f"{sum(SNIPPET * (v[2] // SNIPPET) for v in videos)}\n")
    print("| convention | frames | anomalous | frame AUC |\n|---|---:|---:|---:|")
    aucs = {}
    for name, pairs in curves.items():
        truth = np.concatenate([t for t, _ in pairs])
        aucs[name] = roc_auc_score(truth, np.concatenate([s for _, s in pairs]))
        print(f"| {name} | {len(truth)} | {int(truth.sum())} | {aucs[name]:.4f} |")
    for name in ("16 T truncation", "16 T with snippet scores"):
        print(f"{name} - ours: {aucs[name] - aucs['ours (all frames)']:+.4f}")
    print(f"{time.perf_counter() - started:.0f} s in all")


def _test_videos(run_uri: str) -> list[tuple[np.ndarray, np.ndarray, int, list[tuple[int, int]]]]:
    """(scores float32 (K,), bounds int64 (K, 2), frames, intervals) per test video, sorted by id."""
    table = segments_with_scores(open_run(run_uri)).to_pandas()
    out = []
    for _, group in table[table[S.SPLIT] == "test"].groupby(S.VIDEO_ID, sort=True):
        flat = group[S.GT_INTERVALS].iloc[0]
        flat = [] if flat is None else list(flat)
        out.append((group[S.SCORE].to_numpy(np.float32),
                    group[[S.START_FRAME, S.END_FRAME]].to_numpy(np.int64),
                    int(group[S.NUM_FRAMES].iloc[0]),
                    [(int(flat[i]), int(flat[i + 1])) for i in range(0, len(flat), 2)]))
    return out


def _args():
    parser = corpus_arguments(__doc__.split("\n\n")[0])
    parser.set_defaults(videos=48, seconds=4.0, epochs=40)
    parser.add_argument("--segments", type=int, default=16)
    return parser.parse_args()


if __name__ == "__main__":
    main()
