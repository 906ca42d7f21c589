"""Where an interrupted Ray Train run of a stage stands, so that running the stage again resumes it.

Each training stage names its Ray Train run after itself (``scorer``, ``finetune``) in the stage's scratch
folder, which belongs to the stage's fingerprint (:mod:`dualvad.stages.runner`) and outlives an interrupted
run. Ray Train's controller keeps, beside the run's checkpoints, a snapshot of the checkpoints it registered;
a new trainer with the same storage path and name loads it, and ``ray.train.get_checkpoint()`` hands the
workers the latest. A SIGTERMed stage run again thus goes on from its last registered checkpoint instead of
starting over, and leaves no second run's checkpoints beside the first.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow.fs as pafs

# The file Ray Train's controller rewrites at every registration (ray.train.v2's
# CHECKPOINT_MANAGER_SNAPSHOT_FILENAME; spelled out so that importing this module needs no Ray).
SNAPSHOT_FILE = "checkpoint_manager_snapshot.json"


def read_snapshot(fs: pafs.FileSystem, experiment_dir: str) -> dict[str, Any] | None:
    """Ray Train's checkpoint snapshot of the run stored in ``experiment_dir`` (``storage_path/name`` on
    ``fs``): ``latest_checkpoint_result`` and the kept ``checkpoint_results``, each with the metrics
    reported with it. ``None`` when there is no such run yet, or when the snapshot is caught mid-rewrite
    (it is not written atomically)."""
    path = f"{experiment_dir}/{SNAPSHOT_FILE}"
    if fs.get_file_info(path).type != pafs.FileType.File:
        return None
    with fs.open_input_stream(path) as stream:
        try:
            return json.loads(stream.read())
        except json.JSONDecodeError:
            return None


def registered_metrics(fs: pafs.FileSystem, experiment_dir: str) -> dict[str, Any] | None:
    """The metrics reported with the latest checkpoint Ray Train registered for the run stored in
    ``experiment_dir``; ``None`` when there is no such run or no checkpoint yet (:func:`read_snapshot`)."""
    latest = (read_snapshot(fs, experiment_dir) or {}).get("latest_checkpoint_result")
    return dict(latest["metrics"]) if latest else None
