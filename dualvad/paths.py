"""Every path inside a run directory, in one place (DESIGN.md, Stages).

A stage's output is one folder directly under the run; the stage runner
(:mod:`dualvad.stages.runner`) publishes it whole. Paths are tuples of parts for
:meth:`dualvad.rundir.RunDir.path`, relative to the run, or relative to a stage's output where
the name says so (``*_FILE`` and ``*_DIR`` constants inside an output).
"""

from __future__ import annotations

# Stage outputs, one folder each under the run.
SEGMENTS = "segments"  # ingest: *.parquet, one row per (video, segment)
SCORER = "scorer"  # train-scorer: model/ (scorer.json + model.pt), metrics.json, history.json, [tensorboard/]
SCORES = "scores"  # score: *.parquet, one row per (video, segment)
SAMPLES = "samples"  # sample: *.parquet, one row per video
BENCHMARKS = "benchmarks"  # build-benchmarks: image/ and video/ shards, manifest.json
# finetune: final/ (Hugging Face folder, README.md the model card), base/ (a random preset), train_log.json,
# [tensorboard/]
FINETUNE = "finetune"
# evaluate: metrics.json, verdict.json, results.*, report.html, model_card.md, predictions/, samples/
EVAL = "eval"

# Inside every stage output.
STAGE_FILE = "_stage.json"  # the runner's record: fingerprint, inputs, settings, summary
FAILURES_FILE = "_failures.parquet"  # per-video failures of the run that wrote the output
CONFIG_FILE = "config.yaml"  # the whole effective config the stage ran with, headed by the keys it hashed

# Inside a run, the runner's own.
LOCK_FILE = ".lock"  # held while a stage runs on this run directory
LOCK_OWNER_FILE = ".lock.owner"  # a local run's lock holder (stage, pid, host, since), beside filelock's file
WORK_DIR = ".work"  # staging folders of stages in progress (published on success)

# Inside stage outputs.
SCORER_MODEL_DIR = "model"  # RUN/scorer/model
SCORER_METRICS_FILE = "metrics.json"  # RUN/scorer/metrics.json: the exported checkpoint's metrics
SCORER_HISTORY_FILE = "history.json"  # RUN/scorer/history.json: every report of the training run
BENCHMARK_KINDS = ("image", "video")  # RUN/benchmarks/<kind>/shard-*.parquet
MANIFEST_FILE = "manifest.json"  # RUN/benchmarks/manifest.json
FINETUNE_BASE_DIR = "base"  # RUN/finetune/base: a random preset's starting weights
FINETUNE_FINAL_DIR = "final"  # RUN/finetune/final: the Hugging Face export
TRAIN_LOG_FILE = "train_log.json"  # RUN/finetune/train_log.json
CARD_FILE = "README.md"  # a Hugging Face card: RUN/finetune/final/README.md, the JSONL export's README.md
# RUN/finetune/tensorboard, RUN/scorer/tensorboard (finetune.tracking / scorer.tracking = tensorboard); also
# inside every checkpoint
TENSORBOARD_DIR = "tensorboard"
PREDICTIONS_DIR = "predictions"  # RUN/eval/predictions/<model>.parquet
EVAL_SAMPLES_DIR = "samples"  # RUN/eval/samples/<strategy>.parquet: frames an ablation sampled itself
METRICS_FILE = "metrics.json"  # RUN/eval/metrics.json
# RUN/eval: the 16-frame protocol's ground truth as the reference repositories' .npy, and its videos in order
SNIPPET_GT_FILE, SNIPPET_GT_VIDEOS_FILE = "gt_16frame.npy", "gt_16frame_videos.json"
VERDICT_FILE = "verdict.json"  # RUN/eval/verdict.json: the verdict fitted on validation videos (eval.verdict)
EVAL_MODEL_CARD_FILE = "model_card.md"  # RUN/eval/model_card.md: the evaluated model's card with its metrics
JSONL_EXPORT = "jsonl"  # RUN/jsonl: `dualvad export-jsonl`'s default folder (not a stage output)
LLAMAFACTORY_DATASET_INFO = "dataset_info.json"  # inside the JSONL export: LLaMA-Factory's registry
INTERNVL_META = "internvl_meta_{split}.json"  # inside the JSONL export: InternVL's meta file per split
RAY_DIR = "ray"  # Ray Train's storage inside a stage's scratch folder
LOGS = "logs"  # RUN/logs: each stage command's log (not a stage output; dualvad.console, README "Console")
RAY_LOGS_SUFFIX = ".ray"  # RUN/logs/<command's log name>.ray/: the Ray workers' logs of that command
