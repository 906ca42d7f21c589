"""Where an interrupted Ray Train run of a stage stands, so that running the stage again resumes it.

Each training stage names its Ray Train run after itself (``scorer``, ``finetune``) in the stage's scratch
folder, which belongs to the stage's fingerprint (:mod:`dualvad.stages.runner`) and outlives an interrupted
run. Ray Train's controller keeps, beside the run's checkpoints, a snapshot of the checkpoints it registered;
a new trainer with the same storage path and name loads it, and ``ray.train.get_checkpoint()`` hands the
workers the latest. A SIGTERMed stage run again thus goes on from its last registered checkpoint instead of
starting over, and leaves no second run's checkpoints beside the first.
"""

from __future__ import annotations

from typing import Any

import pyarrow.fs as pafs
import ray.train


def registered_metrics(fs: pafs.FileSystem, experiment_dir: str) -> dict[str, Any] | None:
    """The metrics reported with the latest checkpoint Ray Train registered for the run stored in
    ``experiment_dir`` (``storage_path/name`` on ``fs``), read with Ray's public
    ``ray.train.Result.from_path``; ``None`` when there is no such run or no checkpoint yet."""
    if fs.get_file_info(experiment_dir).type != pafs.FileType.Directory:
        return None
    try:
        result = ray.train.Result.from_path(experiment_dir, storage_filesystem=fs)
    except RuntimeError:  # the folder holds no checkpoint snapshot: killed before the first registration
        return None
    return dict(result.metrics) if result.metrics else None
