"""The training loops' TensorBoard log: what it writes, what a checkpoint carries and how a restart continues
it (read back with TensorBoard's own reader)."""

from __future__ import annotations

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from dualvad.config import ConfigError, load_config
from dualvad.tracking import Tracker


def scalars(folder) -> dict[str, list[tuple[int, float]]]:
    events = EventAccumulator(str(folder))
    events.Reload()
    return {tag: [(event.step, event.value) for event in events.Scalars(tag)]
            for tag in events.Tags()["scalars"]}


def test_a_restarted_log_continues_from_the_checkpoint_it_resumes(tmp_path):
    """Steps 1-2 saved into a checkpoint, step 3 logged but lost with its process; the restarted process
    restores the checkpoint's log and logs steps 3-4: the log holds 1-4 once each (``None``, non-finite
    values and the skipped keys left out)."""
    skip = ("step",)
    first = Tracker("tensorboard", write=True)
    first.log(1, {"step": 1, "loss": 2.5, "lr": 0.5, "mfu": None}, skip)
    first.log(2, {"step": 2, "loss": 1.5, "lr": 0.25, "mfu": None}, skip)
    first.save(str(tmp_path / "checkpoint-2"))
    first.log(3, {"step": 3, "loss": 9.0, "lr": 9.0}, skip)  # never saved: the process dies here
    first.close()
    second = Tracker("tensorboard", write=True)
    second.restore(str(tmp_path / "checkpoint-2"))
    second.log(3, {"step": 3, "loss": 1.25, "lr": 0.125, "mfu": None}, skip)
    second.log(4, {"step": 4, "loss": float("nan"), "lr": 0.0625}, skip)  # not finite: left out
    second.save(str(tmp_path / "checkpoint-4"))
    second.close()
    assert scalars(tmp_path / "checkpoint-4" / "tensorboard") == {
        "loss": [(1, 2.5), (2, 1.5), (3, 1.25)], "lr": [(1, 0.5), (2, 0.25), (3, 0.125), (4, 0.0625)]}
    with pytest.raises(RuntimeError, match="after the first log"):
        late = Tracker("tensorboard", write=True)
        late.log(1, {"loss": 1.0})
        try:
            late.restore(str(tmp_path / "checkpoint-4"))
        finally:
            late.close()


@pytest.mark.parametrize(("kind", "write"), [("none", True), ("tensorboard", False)])
def test_no_tracking_or_another_rank_writes_nothing(tmp_path, kind, write):
    tracker = Tracker(kind, write=write)
    tracker.log(1, {"loss": 1.0})
    tracker.save(str(tmp_path))
    tracker.close()
    assert not tracker.enabled and list(tmp_path.iterdir()) == []


def test_tracking_values_are_checked_when_the_config_loads():
    assert load_config().finetune.tracking == load_config().scorer.tracking == "none"
    with pytest.raises(ConfigError,
                       match="'finetune.tracking' must be one of 'none', 'tensorboard', got 'mlflow'"):
        load_config(None, ["finetune.tracking=mlflow"])
    with pytest.raises(ConfigError, match="'finetune.keep_checkpoints' must be >= 1, got 0"):
        load_config(None, ["finetune.keep_checkpoints=0"])
