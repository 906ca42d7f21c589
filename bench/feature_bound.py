"""How much anomaly signal the segment features carry: a supervised upper bound, per category.

Generates (once) the scorer benchmark's corpus, extracts the ``motion`` features of every
video in-process (no Ray), fits a random forest on the *train* split's segments with segment
labels from the generator's event ranges (which weak supervision never sees), and prints the
frame-level AUC-ROC on the test split: over all test videos, and for each category over its
videos plus the normal ones. A weakly supervised scorer should not be expected to beat it;
a category near 0.5 here is invisible to the features.

    python bench/feature_bound.py                       # the bench/scorer.py corpus
    python bench/feature_bound.py --videos 40 --seconds 4
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from common import OUT, corpus_arguments

SEGMENTS, FRAMES_PER_SEGMENT = 32, 8  # the ingest defaults


def main() -> None:
    args = corpus_arguments(__doc__.split("\n\n")[0], videos=240).parse_args()
    corpus = _corpus(args.videos, args.seconds, args.seed)
    from dualvad.corpus import SynthSpec
    from dualvad.corpus.synth_plan import CATEGORIES, plan_corpus

    plans = plan_corpus(SynthSpec(videos=args.videos, seconds=args.seconds, seed=args.seed))
    started = time.perf_counter()
    videos = [_features(corpus, plan) for plan in plans]
    print(f"features: {len(videos)} videos in {time.perf_counter() - started:.1f} s")
    scores = _forest_scores(videos)
    test = [v for v in videos if v["split"] == "test"]
    print(f"{'test videos':<22} frame AUC {_frame_auc(test, scores):.3f}")
    for category in CATEGORIES:
        chosen = [v for v in test if v["label"] in (category, "Normal")]
        print(f"{category + ' vs Normal':<22} frame AUC {_frame_auc(chosen, scores):.3f}")


def _corpus(videos: int, seconds: float, seed: int) -> Path:
    """The corpus folder bench/scorer.py uses, generated if missing."""
    from dualvad.corpus import SynthSpec, generate_corpus

    corpus = OUT / "scorer" / f"{videos}x{seconds:g}s-seed{seed}" / "corpus"
    if not (corpus / "annotations").is_dir():
        generate_corpus(corpus, SynthSpec(videos=videos, seconds=seconds, seed=seed))
    return corpus


def _features(corpus: Path, plan) -> dict:
    """One video: features (K, D) float32, segment labels (K,) bool (over half the segment's
    frames inside the event), frame bounds (K, 2), label and split."""
    from dualvad.scorer.features import build_extractor, extract_video_features

    video = extract_video_features(str(corpus / "videos" / plan.video_id), build_extractor("motion"),
                                   SEGMENTS, FRAMES_PER_SEGMENT)
    start, end = plan.event if plan.event is not None else (0, 0)
    overlap = np.clip(np.minimum(video.bounds[:, 1], end) - np.maximum(video.bounds[:, 0], start), 0, None)
    inside = overlap / (video.bounds[:, 1] - video.bounds[:, 0]) > 0.5
    return {"id": plan.video_id, "label": plan.label, "split": plan.split, "features": video.features,
            "bounds": video.bounds, "inside": inside}


def _forest_scores(videos: list[dict]) -> dict[str, np.ndarray]:
    """Segment scores (K,) per video id from a random forest fitted on the train split."""
    from sklearn.ensemble import RandomForestClassifier

    train = [v for v in videos if v["split"] == "train"]
    forest = RandomForestClassifier(n_estimators=300, min_samples_leaf=3, random_state=0, n_jobs=1)
    forest.fit(np.concatenate([v["features"] for v in train]), np.concatenate([v["inside"] for v in train]))
    return {v["id"]: forest.predict_proba(v["features"])[:, 1] for v in videos if v["split"] == "test"}


def _frame_auc(videos: list[dict], scores: dict[str, np.ndarray]) -> float:
    """AUC-ROC over the frames of ``videos`` (segment scores and labels repeated to frames)."""
    from sklearn.metrics import roc_auc_score

    pairs = [(v, v["bounds"][:, 1] - v["bounds"][:, 0]) for v in videos]
    frame_scores = np.concatenate([np.repeat(scores[v["id"]], n) for v, n in pairs])
    frame_labels = np.concatenate([np.repeat(v["inside"], n) for v, n in pairs])
    return float(roc_auc_score(frame_labels, frame_scores))


if __name__ == "__main__":
    main()
