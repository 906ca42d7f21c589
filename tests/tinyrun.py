"""The tiny whole-pipeline run of the job and object-storage tests, defined once."""

from __future__ import annotations

from dualvad import paths

# The smallest settings that still run every stage (as the demo test's): 12 videos of 1 s, K=8, 2 scorer
# epochs, the tiny VLM for 2 fine-tuning steps on one worker (two workers: tests/train/test_finetune.py),
# one evaluation actor, 2 generated tokens per explanation.
TINY = ["ingest.segments=8", "ingest.cpus_per_worker=0.5", "scorer.epochs=2", "scorer.report_every=1",
        "scorer.cpus_per_worker=0.5", "sample.budget=8", "benchmarks.image_size=56",
        "benchmarks.clip_frames=4",
        "finetune.max_steps=2", "finetune.report_every=2", "finetune.max_length=512", "finetune.workers=1",
        "eval.max_new_tokens=2", "eval.cpus_per_worker=0.5", "eval.ablate=none", "eval.workers=1"]
OUTPUTS = {"ingest": paths.SEGMENTS, "train-scorer": paths.SCORER, "score": paths.SCORES,
           "sample": paths.SAMPLES, "build-benchmarks": paths.BENCHMARKS, "finetune": paths.FINETUNE,
           "evaluate": paths.EVAL}
