"""The whole chain on a generated corpus, ending in the benchmark-mixing study (issue 15).

Generates a corpus, ingests it, trains the RefineVAD scorer on the train split, scores, samples
(focused) and builds both benchmarks once. Then, for every benchmark mix and training seed, fine-tunes
the ``--model`` preset (random weights, seeded by the training seed) on the train split in a run of its
own and evaluates it on the test split (focused frames). The mixes (``finetune.*``):

  * ``image``: the image benchmark only (``video_weight=0``);
  * ``video``: the video benchmark only (``image_weight=0``);
  * ``joint``: both, interleaved at random (``curriculum=joint``);
  * ``image_first``: both, every image row of an epoch before its video rows;
  * ``weighted``: both, the image rows drawn twice per epoch (``image_weight=2``).

Every mix runs the same number of optimizer steps, so each sees as many rows. Prints the video and frame
AUC of each VLM row per seed with their mean and spread, the per-category frame AUC (mean over seeds),
the scorer's row beside them, and the answer to the paper's open question: does any schedule keep
image-only's frame AUC and joint training's video AUC at once? With ``--sampling`` also the sampling
ablation (focused, uniform, random frames) of the joint model of the first seed.

Every figure comes from the run directories under ``bench/out/evaluate/``; finished stages are skipped
on a re-run (the stage runner), so an interrupted study continues where it stopped.

    python bench/evaluate.py [--videos 160] [--seconds 3] [--model small] [--steps 400] [--seeds 0 1 2]
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from dualvad.config import load_config
from dualvad.pipeline.build_benchmarks import run_build_benchmarks
from dualvad.pipeline.evaluate import run_evaluate
from dualvad.pipeline.sample import run_sample
from dualvad.pipeline.score import run_score
from dualvad.train.finetune import run_finetune
from dualvad.train.train_scorer import run_train_scorer

from common import corpus_arguments, prepared_run

SHARED_STAGES = ("segments", "scorer", "scores", "samples", "benchmarks")
VLM_ROW = "vlm/focused"


@dataclass(frozen=True)
class Mix:
    """A benchmark mix: the ``finetune.*`` settings it changes."""

    name: str
    image_weight: float
    video_weight: float
    curriculum: str = "joint"

    def overrides(self) -> list[str]:
        return [f"finetune.image_weight={self.image_weight}", f"finetune.video_weight={self.video_weight}",
                f"finetune.curriculum={self.curriculum}"]


MIXES = {mix.name: mix for mix in (
    Mix("image", 1.0, 0.0), Mix("video", 0.0, 1.0), Mix("joint", 1.0, 1.0),
    Mix("image_first", 1.0, 1.0, "image_first"), Mix("weighted", 2.0, 1.0))}


def main() -> None:
    args = _args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    started = time.perf_counter()
    config, _ = prepared_run("evaluate", args.videos, args.seconds, args.seed, _shared_overrides(args),
                             cameras=args.cameras)
    for stage in (run_train_scorer, run_score, run_sample, run_build_benchmarks):
        print(stage(config))
    metrics: dict[tuple[str, int], dict] = {}
    for name in args.mixes:
        for seed in args.seeds:
            metrics[name, seed] = _study_run(config, MIXES[name], seed, args)
    _print_study(metrics, args)
    if args.sampling:
        _print_sampling(config, args)
    print(f"{time.perf_counter() - started:.0f} s in all; runs under {Path(config.run).parent}")


def _shared_overrides(args) -> list[str]:
    return [f"ingest.segments={args.segments}", f"scorer.epochs={args.epochs}", "scorer.report_every=10",
            f"sample.budget={args.budget}", "benchmarks.shards=2", f"finetune.model={args.model}",
            f"finetune.max_steps={args.steps}", f"finetune.lr={args.lr}",
            f"finetune.micro_batch={args.micro_batch}",
            f"finetune.warmup_steps={max(1, args.steps // 15)}", f"finetune.report_every={args.steps}",
            "finetune.workers=2", "eval.cpus_per_worker=1", "eval.max_new_tokens=12"]


def _study_run(config, mix: Mix, seed: int, args) -> dict:
    """Fine-tune and evaluate one (mix, seed); returns its ``metrics.json``."""
    overrides = [*mix.overrides(), f"finetune.seed={seed}"]
    run_config = _run_beside(config, f"{mix.name}-seed{seed}", overrides, args)
    started = time.perf_counter()
    print(f"{mix.name}, seed {seed}: {run_finetune(run_config)}")
    print(f"{mix.name}, seed {seed}: {run_evaluate(run_config)} ({time.perf_counter() - started:.0f} s)")
    return json.loads((Path(run_config.run) / "eval" / "metrics.json").read_text())


def _run_beside(config, name: str, overrides: list[str], args):
    """A run beside ``config.run`` sharing its stages up to the benchmarks (symlinks)."""
    base = Path(config.run)
    run = base.parent / name
    run.mkdir(parents=True, exist_ok=True)
    for stage in SHARED_STAGES:
        if not (run / stage).exists():
            os.symlink(base / stage, run / stage)
    settings = [f"corpus={config.corpus}", "ray.num_cpus=2", *_shared_overrides(args), *overrides]
    return load_config(None, [*settings, f"run={run}"])


def _mean_sd(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def _print_study(metrics: dict[tuple[str, int], dict], args) -> None:
    """The VLM rows per mix (per seed, mean ± sample sd), per category, and the mixing verdict."""
    print(f"\n## Benchmark mixing: {args.model} preset, {args.steps} steps of {2 * args.micro_batch} rows, "
          f"lr {args.lr}, seeds {' '.join(map(str, args.seeds))}, focused frames\n")
    print("| mix | video AUC per seed | video AUC | frame AUC per seed | frame AUC |")
    print("|---|---|---:|---|---:|")
    means = {}
    for name in args.mixes:
        video = [metrics[name, seed]["metrics"][VLM_ROW]["video_auc"] for seed in args.seeds]
        frame = [metrics[name, seed]["metrics"][VLM_ROW]["frame_auc"] for seed in args.seeds]
        means[name] = (statistics.mean(video), statistics.mean(frame))
        print(f"| {name} | {' '.join(f'{v:.3f}' for v in video)} | {_mean_sd(video)} | "
              f"{' '.join(f'{v:.3f}' for v in frame)} | {_mean_sd(frame)} |")
    scorer = metrics[args.mixes[0], args.seeds[0]]["metrics"]["scorer"]
    print(f"| (scorer) | | {scorer['video_auc']:.3f} | | {scorer['frame_auc']:.3f} |")
    _print_categories(metrics, args)
    _print_verdict(means)


def _print_categories(metrics: dict[tuple[str, int], dict], args) -> None:
    categories = sorted(metrics[args.mixes[0], args.seeds[0]]["categories"][VLM_ROW])
    print("\nPer-category frame AUC (the category's videos and the normal ones; mean over seeds)\n")
    print(f"| mix | {' | '.join(categories)} |")
    print(f"|---|{'---:|' * len(categories)}")
    for name in args.mixes:
        cells = [statistics.mean(metrics[name, seed]["categories"][VLM_ROW][category]["frame_auc"]
                                 for seed in args.seeds) for category in categories]
        print(f"| {name} | {' | '.join(f'{cell:.3f}' for cell in cells)} |")


def _print_verdict(means: dict[str, tuple[float, float]]) -> None:
    """Which schedule reaches image-only's frame AUC and joint training's video AUC at once (means)."""
    best_video = max(means, key=lambda name: means[name][0])
    best_frame = max(means, key=lambda name: means[name][1])
    print(f"\nbest mean video AUC: {best_video} ({means[best_video][0]:.3f}); "
          f"best mean frame AUC: {best_frame} ({means[best_frame][1]:.3f})")
    if "image" in means and "joint" in means:
        frame_bar, video_bar = means["image"][1], means["joint"][0]
        both = [name for name, (video, frame) in means.items() if video >= video_bar and frame >= frame_bar]
        print(f"schedules at or above image-only's frame AUC ({frame_bar:.3f}) and joint's video AUC "
              f"({video_bar:.3f}) at once: {', '.join(both) or 'none'}")


def _print_sampling(config, args) -> None:
    joint = _run_beside(config, f"joint-seed{args.seeds[0]}",
                        [*MIXES["joint"].overrides(), f"finetune.seed={args.seeds[0]}"], args)
    print("\n## Sampling ablation (the joint model of the first seed)\n")
    print(run_evaluate(dataclasses.replace(joint, eval=dataclasses.replace(joint.eval, ablate="sampling"))))


def _args():
    parser = corpus_arguments(__doc__.split("\n\n")[0])
    parser.set_defaults(videos=160, seconds=3.0, epochs=40)  # half the demo's videos, half of them tested
    parser.add_argument("--segments", type=int, default=12)
    parser.add_argument("--budget", type=int, default=16, help="frames sampled per video")
    parser.add_argument("--model", default="small", help="finetune.model: a random preset (tiny, small)")
    parser.add_argument("--steps", type=int, default=400, help="fine-tuning optimizer steps per model")
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--micro-batch", type=int, default=4, help="rows per worker per step (2 workers)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds")
    parser.add_argument("--mixes", nargs="+", default=list(MIXES), choices=list(MIXES))
    parser.add_argument("--sampling", action="store_true", help="also the sampling ablation")
    return parser.parse_args()


if __name__ == "__main__":
    main()
