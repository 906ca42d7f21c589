"""The fine-tuning lr schedule: exact factors per step, every step of a run at lr > 0, and its errors."""

from __future__ import annotations

import pytest
import torch

from dualvad.train.lr_schedule import lr_factor, lr_scheduler


def test_warmup_then_linear_decay_exact():
    """W = 2, T = 5: updates 1..5 at 1/2, 1, then (6 - s) / 4 for s = 3, 4, 5."""
    assert [lr_factor(step, 2, 5) for step in range(5)] == [0.5, 1.0, 0.75, 0.5, 0.25]


def test_no_warmup_is_a_constant_lr():
    assert [lr_factor(step, 0, 4) for step in range(4)] == [1.0] * 4


def test_a_two_step_run_changes_the_weights_at_both_steps():
    """The tests' tiny runs (2 steps, warmup 1): DeepSpeed's WarmupDecayLR ran both at lr 0."""
    assert [lr_factor(step, 1, 2) for step in range(2)] == [1.0, 0.5]


def test_warmup_over_the_whole_run_ends_at_the_peak():
    assert [lr_factor(step, 4, 4) for step in range(4)] == [0.25, 0.5, 0.75, 1.0]


def test_steps_past_the_run_are_at_zero():
    assert lr_factor(5, 2, 5) == 0.0 and lr_factor(9, 2, 5) == 0.0


@pytest.mark.parametrize("warmup,total", [(0, 1), (1, 1), (1, 2), (10, 150), (150, 150), (50, 2000)])
def test_every_step_of_a_run_is_positive_and_peaks_at_the_end_of_warmup(warmup, total):
    factors = [lr_factor(step, warmup, total) for step in range(total)]
    assert min(factors) > 0 and max(factors) == 1.0
    assert factors.index(1.0) == max(0, warmup - 1)


def test_the_torch_scheduler_sets_each_steps_lr():
    """What DeepSpeed does with it: build over its optimizer, step after every optimizer step; the lr a step
    runs at is the optimizer's before that step."""
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=0.004)
    scheduler = lr_scheduler(2, 5)(optimizer)
    seen = []
    for _ in range(5):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen == pytest.approx([0.002, 0.004, 0.003, 0.002, 0.001], abs=1e-15)


def test_a_restored_scheduler_goes_on_where_it_stopped():
    """Checkpoints hold ``state_dict()`` (and the optimizer's, with its current lr); a new scheduler loaded
    from it gives the remaining steps' lr."""
    first = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = lr_scheduler(2, 5)(first)
    for _ in range(3):
        first.step()
        scheduler.step()
    second = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    resumed = lr_scheduler(2, 5)(second)
    resumed.load_state_dict(scheduler.state_dict())
    assert resumed.last_epoch == 3 and resumed.get_last_lr() == [0.5]  # update 4 of 5
    second.step()
    resumed.step()
    assert second.param_groups[0]["lr"] == 0.25  # update 5 of 5


@pytest.mark.parametrize("warmup,total,message", [
    (0, 0, "total_steps must be a positive integer, got 0"),
    (3, 2, r"warmup_steps must be an integer in \[0, total_steps=2\], got 3"),
    (-1, 2, r"warmup_steps must be an integer in \[0, total_steps=2\], got -1"),
])
def test_bad_settings_are_clear_errors(warmup, total, message):
    with pytest.raises(ValueError, match=message):
        lr_scheduler(warmup, total)
