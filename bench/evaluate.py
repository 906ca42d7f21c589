"""The whole chain on a generated corpus, ending in the evaluation tables (issue 7).

Generates a corpus, ingests it, trains the RefineVAD scorer on the train split, scores, samples
(focused), builds both benchmarks, fine-tunes the tiny InternVL on their train split, then runs
`dualvad evaluate` on the test split twice:

  * ``--ablate sampling``: the fine-tuned model on focused, uniform and random frames, beside the
    scorer baseline;
  * ``--ablate benchmarks`` (unless ``--no-benchmarks``): models fine-tuned on the image benchmark
    only, the video benchmark only, and both (same steps), all on focused frames.

Prints both tables and, per VLM row, whether each metric beats chance (0.5 AUC). Every figure
comes from the run directories under ``bench/out/evaluate-*``; nothing is cached between runs
except the generated corpus and its ingest.

    python bench/evaluate.py [--videos 48] [--seconds 4] [--steps 200]
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from pathlib import Path

from dualvad.config import load_config
from dualvad.pipeline.benchmarks import run_build_benchmarks
from dualvad.pipeline.evaluate import run_evaluate
from dualvad.pipeline.sample import run_sample
from dualvad.pipeline.score import run_score
from dualvad.train.finetune import run_finetune
from dualvad.train.scorer import train_scorer

from common import corpus_arguments, prepared_run

SHARED_STAGES = ("segments", "scorer", "scores", "samples", "benchmarks")
# Benchmark mixes of the ablation: (name, finetune.image_weight, finetune.video_weight).
MIXES = (("image", 1.0, 0.0), ("video", 0.0, 1.0), ("both", 1.0, 1.0))


def main() -> None:
    args = _args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    started = time.perf_counter()
    overrides = [f"ingest.segments={args.segments}", f"scorer.epochs={args.epochs}", "scorer.report_every=10",
                 f"sample.budget={args.budget}", "benchmarks.image_size=56",
                 "benchmarks.clip_frames=8", "benchmarks.shards=2", *_finetune_overrides(args),
                 "eval.cpus_per_worker=1", "eval.max_new_tokens=12"]
    config, _ = prepared_run("evaluate", args.videos, args.seconds, args.seed, overrides)
    print(train_scorer(config))
    print(run_score(config))
    print(run_sample(config))
    print(run_build_benchmarks(config))
    runs = {name: _mix_run(config, name, image, video, overrides) for name, image, video in MIXES}
    for name, run_config in runs.items():
        print(f"fine-tuning on {name}: {run_finetune(run_config)}")
    both = runs["both"]
    sampling = run_evaluate(dataclasses.replace(both, eval=dataclasses.replace(both.eval, ablate="sampling")))
    print("\n## Sampling ablation (model fine-tuned on both benchmarks)\n")
    print(sampling)  # an EvalSummary, or Skipped with the earlier run's summary
    _chance(both.run)
    if not args.no_benchmarks:
        compare = [f"{name}={run.run}" for name, run in runs.items()]
        benchmarks = run_evaluate(dataclasses.replace(
            both, eval=dataclasses.replace(both.eval, ablate="benchmarks", compare=compare)))
        print("\n## Benchmark ablation (focused frames)\n")
        print(benchmarks)
        _chance(both.run)
    print(f"report: {Path(both.run) / 'eval' / 'report.html'}; {time.perf_counter() - started:.0f} s in all")


def _finetune_overrides(args) -> list[str]:
    return [f"finetune.max_steps={args.steps}", f"finetune.lr={args.lr}",
            f"finetune.micro_batch={args.micro_batch}", f"finetune.warmup_steps={max(1, args.steps // 20)}",
            f"finetune.report_every={args.steps}", "finetune.workers=2"]


def _mix_run(config, name: str, image_weight: float, video_weight: float, overrides: list[str]):
    """A run beside ``config.run`` sharing its stages up to the benchmarks (symlinks), fine-tuned on one
    benchmark mix."""
    base = Path(config.run)
    run = base.parent / f"finetune-{name}"
    run.mkdir(parents=True, exist_ok=True)
    for stage in SHARED_STAGES:
        if not (run / stage).exists():
            os.symlink(base / stage, run / stage)
    weights = [f"finetune.image_weight={image_weight}", f"finetune.video_weight={video_weight}"]
    settings = [f"corpus={config.corpus}", "ray.num_cpus=2", *overrides, *weights, f"run={run}"]
    return load_config(None, settings)


def _chance(run: str) -> None:
    """Per VLM row: which metrics beat chance (> 0.5 AUC), from the metrics.json just written."""
    import json

    metrics = json.loads((Path(run) / "eval" / "metrics.json").read_text())["metrics"]
    for model, values in metrics.items():
        verdicts = [f"{key} {'>' if (v or 0) > 0.5 else '<='} 0.5" for key, v in values.items()
                    if key != "frame_ap" and v is not None]
        print(f"  {model}: {', '.join(verdicts)}")


def _args():
    parser = corpus_arguments(__doc__.split("\n\n")[0])
    parser.set_defaults(videos=48, seconds=4.0, epochs=40)
    parser.add_argument("--segments", type=int, default=16)
    # above K: focused spends N - K frames by the scores (at N = K it equals uniform, one frame per segment)
    parser.add_argument("--budget", type=int, default=32)
    parser.add_argument("--steps", type=int, default=200, help="fine-tuning optimizer steps per model")
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--micro-batch", type=int, default=4)
    parser.add_argument("--no-benchmarks", action="store_true", help="skip the benchmark ablation")
    return parser.parse_args()


if __name__ == "__main__":
    main()
