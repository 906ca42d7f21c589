"""The motion extractor's cues on two corpora, for comparing two versions of the cues side by side.

Builds (once) the demo's generated corpus (``dualvad/profiles/demo.yaml``'s synth settings, ``--videos``
of them) and the real-footage corpus (:mod:`dualvad.corpus.real_footage`, default spec), ingests each
with the ``dualvad`` on ``PYTHONPATH`` into ``bench/out/cues/<corpus>/<--tag>/run`` (so two versions of
the cues, e.g. a ``git archive`` of the old code and the tree, run into folders of their own), trains
the default scorer with ``--train-seeds`` seeds and prints frame AUC overall and per category, the video
AUC, and the extractor's cost per segment (``segment_cues`` + ``video_context`` on the decoded frames of
one video, ms per segment).

``--drop CUE`` (repeatable; a cue of ``dualvad.scorer.features.CUES`` or a group of ``CUE_GROUPS``) zeroes
that cue's two columns (rise and drop) in a copy of the ingested segments before training: an ablation
without a second ingest (the normaliser maps a constant column to 0). ``--ablate-groups`` trains every
variant in turn, all cues and each group dropped, and ends with one table of their means over the seeds.

The old version must run from a directory of its own (``cd`` into the ``git archive``): Ray puts the
driver's working directory on its workers' path ahead of ``PYTHONPATH``, so an ingest started in the
tree decodes with the tree's cues whatever the driver imported.

    python bench/cues.py --tag new --corpus real --train-seeds 10
    python bench/cues.py --tag new --corpus demo --drop unusual_share --drop unusual_peak
    python bench/cues.py --tag new --corpus real --ablate-groups --train-seeds 3
    python bench/cues.py --tag spread --corpus long-gop --videos 48 --set ingest.decode_window_s=0
    mkdir /tmp/old && git archive OLD dualvad bench | tar -x -C /tmp/old
    cd /tmp/old && PYTHONPATH=/tmp/old python bench/cues.py --tag old --corpus demo
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from common import OUT, frame_aucs, print_seed_table, run_video_auc


def main() -> None:
    args = _args()
    import ray

    from dualvad.config import load_config
    from dualvad.pipeline.ingest import run_ingest
    from dualvad.pipeline.runtime import ensure_ray
    from dualvad.scorer.features import CUE_GROUPS

    corpus, settings = _corpus(args)
    folder = OUT / "cues" / corpus.parent.name / args.tag
    config = load_config(None, [f"corpus={corpus}", f"run={folder / 'run'}", "ray.num_cpus=1", *settings])
    ensure_ray(config.ray)
    ray.data.DataContext.get_current().enable_progress_bars = False
    print(run_ingest(config))
    print(f"cost: {_cost_ms(corpus, config):.2f} ms/segment (segment_cues + video_context, one video)")
    variants = [[], *([group] for group in CUE_GROUPS)] if args.ablate_groups else [args.drop]
    means = []
    for drop in variants:
        name = "-".join(["drop", *drop]) if drop else "all"
        cues = [cue for item in drop for cue in CUE_GROUPS.get(item, (item,))]
        rows = [_seed(config, corpus, folder / f"{name}-seed{seed}", settings, seed, cues)
                for seed in range(args.train_seeds)]
        print(f"\n{corpus.parent.name} / {args.tag} / {name}")
        print_seed_table(rows)
        means.append((name, float(np.mean([r[1] for r in rows])), float(np.mean([r[3] for r in rows])),
                      {k: float(np.mean([r[2][k] for r in rows])) for k in rows[0][2]}))
    if len(variants) > 1:
        _print_ablation(corpus.parent.name, args.train_seeds, means)


def _print_ablation(corpus: str, seeds: int, means: list) -> None:
    """One line per variant: its frame AUC, video AUC and per-kind frame AUC, each a mean over the seeds."""
    kinds = sorted(means[0][3])
    print(f"\n{corpus}: cue groups dropped in turn (means over {seeds} training seeds)")
    print(f"{'variant':<18} {'frame AUC':>9} {'video AUC':>9}" + "".join(f" {k[:11]:>11}" for k in kinds))
    for name, frame, video, by_kind in means:
        print(f"{name:<18} {frame:9.3f} {video:9.3f}" + "".join(f" {by_kind[k]:11.3f}" for k in kinds))


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tag", required=True, help="the cue version's folder name (old, new, ...)")
    parser.add_argument("--corpus", choices=("demo", "real", "long-gop"), required=True,
                        help="long-gop: a UCF-like corpus (x264's default GOP) of --videos videos of 0.5-1.5 "
                             "minutes at 320x240 (bench/common.py's ucf_like_corpus)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override for ingest and training (e.g. ingest.decode_window_s=0)")
    parser.add_argument("--videos", type=int, default=320, help="demo corpus: videos (the demo's 320)")
    parser.add_argument("--train-seeds", type=int, default=3)
    parser.add_argument("--drop", action="append", default=[], help="a cue or cue group to zero (ablation)")
    parser.add_argument("--ablate-groups", action="store_true",
                        help="all cues, then each cue group dropped in turn, and a table of the means")
    return parser.parse_args()


def _corpus(args: argparse.Namespace) -> tuple[Path, list[str]]:
    """Build the corpus once; return its path and the ingest settings it needs (with ``--set``'s)."""
    corpus, settings = _built(args)
    return corpus, [*settings, *args.set]


def _built(args: argparse.Namespace) -> tuple[Path, list[str]]:
    if args.corpus == "long-gop":
        from dualvad.corpus.ucf_like import UcfLikeSpec

        from common import ucf_like_corpus

        spec = UcfLikeSpec(videos=args.videos, hd_videos=0, min_minutes=0.5, mode_minutes=1.0,
                           max_minutes=1.5, seed=1)
        return ucf_like_corpus(spec), []
    if args.corpus == "real":
        from dualvad.corpus.real_footage import RealFootageSpec, build_real_footage_corpus

        corpus = OUT / "cues" / "real" / "corpus"
        if not (corpus / "annotations").is_dir():
            print(build_real_footage_corpus(corpus, spec=RealFootageSpec()))
        return corpus, []
    from dualvad.config import DEMO_PROFILE, load_config
    from dualvad.corpus import generate_corpus

    demo = load_config(DEMO_PROFILE, [f"synth.videos={args.videos}"])
    corpus = OUT / "cues" / f"demo{args.videos}" / "corpus"
    if not (corpus / "annotations").is_dir():
        generate_corpus(corpus, demo.synth)
    return corpus, [f"ingest.segments={demo.ingest.segments}"]


def _seed(config, corpus: Path, run: Path, settings: list[str], seed: int, drop: list[str]) -> tuple:
    """Train and score one seed in ``run`` (segments: the ingest's, or a copy with cues zeroed)."""
    from dualvad.config import load_config
    from dualvad.pipeline.score import run_score
    from dualvad.train.train_scorer import run_train_scorer

    started = time.perf_counter()
    run.mkdir(parents=True, exist_ok=True)
    if not (run / "segments").exists():
        _segments(Path(config.run) / "segments", run / "segments", drop)
    variant = load_config(None, [f"corpus={corpus}", "ray.num_cpus=1", *settings, f"scorer.seed={seed}",
                                 f"run={run}"])
    print(f"seed {seed}: {run_train_scorer(variant)}")
    print(f"seed {seed}: {run_score(variant)}")
    overall, kinds = frame_aucs(run, corpus)
    return seed, overall, kinds, run_video_auc(run, corpus), time.perf_counter() - started


def _segments(source: Path, target: Path, drop: list[str]) -> None:
    """Link the ingested segments, or copy them with the dropped cues' columns set to 0."""
    import os

    if not drop:
        os.symlink(source, target)
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    from dualvad import schema as S
    from dualvad.scorer.features import CUES

    columns = [CUES.index(cue) for cue in drop]
    columns += [len(CUES) + c for c in columns]
    for path in sorted(source.rglob("*")):
        out = target / path.relative_to(source)
        if path.is_dir():
            out.mkdir(parents=True, exist_ok=True)
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        table = pq.read_table(path) if path.suffix == ".parquet" else None
        if table is None or S.FEATURE not in table.column_names:  # settings, stage record, failures
            out.write_bytes(path.read_bytes())
            continue
        features = np.stack(table[S.FEATURE].to_numpy(zero_copy_only=False)).astype(np.float32)
        features[:, columns] = 0.0
        field = table.schema.field(S.FEATURE)
        column = pa.array(list(features), type=field.type)
        pq.write_table(table.set_column(table.schema.get_field_index(S.FEATURE), field, column), out)


def _cost_ms(corpus: Path, config) -> float:
    """ms per segment of the motion extractor's reduction, on the first test video's decoded frames
    (best of 5: the machine is shared)."""
    from dualvad.corpus import read_corpus
    from dualvad.scorer.features import MotionAppearanceExtractor, extract_video_features

    record = next(r for r in read_corpus(corpus) if r.split == "test")
    captured = []
    extractor = MotionAppearanceExtractor()

    def keep(frames: np.ndarray) -> np.ndarray:
        captured.append(frames)
        return extractor(frames)

    keep.decode_size = extractor.decode_size  # type: ignore[attr-defined]
    extract_video_features(str(corpus / record.path), keep, config.ingest.segments,  # type: ignore[arg-type]
                           config.ingest.frames_per_segment)
    frames = captured[0]
    times = []
    for _ in range(5):
        started = time.perf_counter()
        extractor(frames)
        times.append(time.perf_counter() - started)
    return 1000 * min(times) / len(frames)


if __name__ == "__main__":
    main()
