"""M scorers of one kind trained side by side, scoring as one: the mean of their segment scores.

On a few dozen weakly labelled training videos one scorer's quality depends on its seed (initial weights,
dropout, the cue groups dropped) almost as much as on its settings; the mean of M members trained from
different draws is a scorer whose quality depends far less on any one draw. Members share the batches (one
optimiser over all parameters, each member's gradient its own loss's), so the ensemble is one module, one
checkpoint and one resume. Measurements: ``docs/decisions.md``.

Shapes: ``M`` members, ``B`` videos, ``K`` segments, ``D`` input features, ``C`` categories, ``H`` a
member's refined feature width.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from dualvad.scorer.refinevad import ScorerOutput


@dataclass
class EnsembleOutput(ScorerOutput):
    """The ensemble's output (:class:`ScorerOutput` of the means) and each member's own.

    Attributes:
        segment_scores: (B, K) float, the members' mean segment score.
        category_logits: (B, C) float, the log of the members' mean category probabilities (a softmax of
            them gives those probabilities), or None for members without a category head.
        features: (B, K, M * H) float, the members' refined features side by side.
        members: the M members' outputs, in member order (the training loss is theirs).
    """

    members: list[ScorerOutput] | None = None


class ScorerEnsemble(nn.Module):
    """M members built by ``build_member`` (in order, each from torch's generator as it stands, so member 0
    is the single scorer the same seed gives)."""

    def __init__(self, build_member: Callable[[], nn.Module], members: int) -> None:
        super().__init__()
        if members < 2:
            raise ValueError(f"an ensemble needs at least 2 members, got {members}")
        self.members = nn.ModuleList(build_member() for _ in range(members))

    def forward(self, x: Tensor, mask: Tensor | None = None) -> EnsembleOutput:
        """Args: x (B, K, D) float32, the same input for every member, or (M, B, K, D), member m's input at
        ``x[m]`` (training: each member drops its own cue groups); mask (B, K) bool or None.
        """
        count = len(self.members)
        if x.dim() == 4 and x.shape[0] != count:
            raise ValueError(f"x of shape {tuple(x.shape)} holds inputs for {x.shape[0]} members, "
                             f"the ensemble has {count}")
        inputs = list(x) if x.dim() == 4 else [x] * count
        outputs = [member(member_x, mask) for member, member_x in zip(self.members, inputs, strict=True)]
        scores = torch.stack([output.segment_scores for output in outputs]).mean(dim=0)
        logits = None
        if outputs[0].category_logits is not None:
            each = [torch.softmax(output.category_logits, dim=-1) for output in outputs]
            probabilities = torch.stack(each).mean(dim=0)
            logits = torch.log(probabilities.clamp_min(torch.finfo(probabilities.dtype).tiny))
        features = torch.cat([output.features for output in outputs], dim=-1)
        return EnsembleOutput(scores, logits, features, outputs)
