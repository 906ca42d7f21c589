"""The fine-tuning learning-rate schedule: linear warmup, then linear decay, every step at a positive lr
(DeepSpeed's and transformers' warmup schedules run the first steps at lr 0; docs/decisions.md,
2026-12-04).

:func:`lr_factor` defines the schedule as a pure function of the step; :func:`lr_scheduler` wraps it in
torch's ``LambdaLR`` for ``deepspeed.initialize(lr_scheduler=...)``, which steps it once per optimizer step
and keeps its state in every checkpoint (so a resumed run goes on where it stopped).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.optim.lr_scheduler import LambdaLR


def check_schedule(warmup_steps: int, total_steps: int) -> None:
    """Raise ``ValueError`` naming the setting when ``warmup_steps`` / ``total_steps`` make no schedule."""
    if not isinstance(total_steps, int) or total_steps < 1:
        raise ValueError(f"total_steps must be a positive integer, got {total_steps!r}")
    if not isinstance(warmup_steps, int) or not 0 <= warmup_steps <= total_steps:
        raise ValueError(
            f"warmup_steps must be an integer in [0, total_steps={total_steps}], got {warmup_steps!r}")


def lr_factor(step: int, warmup_steps: int, total_steps: int) -> float:
    """The share of the peak lr that optimizer step ``step`` (0-based: ``step + 1`` updates done after it)
    runs at.

    With ``W = warmup_steps`` and ``T = total_steps``, update ``s = step + 1`` runs at ``s / W`` while
    ``s <= W`` (the full lr at update ``W``), then at ``(T + 1 - s) / (T + 1 - W)``: a linear decay that
    reaches ``1 / (T + 1 - W)`` at the last update and 0 only past it. ``W = 0`` is a constant lr (1.0 at
    every step, no decay). Steps past ``T`` (a run resumed with more steps) run at 0.
    """
    if warmup_steps == 0:
        return 1.0
    update = step + 1
    if update <= warmup_steps:
        return update / warmup_steps
    return max(0.0, (total_steps + 1 - update) / (total_steps + 1 - warmup_steps))


def lr_scheduler(warmup_steps: int, total_steps: int) -> Callable[[torch.optim.Optimizer], LambdaLR]:
    """A builder of the :func:`lr_factor` schedule over an optimizer (what ``deepspeed.initialize`` takes as
    ``lr_scheduler``: DeepSpeed calls it with the optimizer it built from its config)."""
    check_schedule(warmup_steps, total_steps)

    def factor(step: int) -> float:
        return lr_factor(step, warmup_steps, total_steps)

    def build(optimizer: torch.optim.Optimizer) -> LambdaLR:
        return LambdaLR(optimizer, factor)

    return build
