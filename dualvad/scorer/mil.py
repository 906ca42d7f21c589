"""MIL ranking baseline: Sultani, Chen and Shah, "Real-world Anomaly Detection in Surveillance
Videos" (CVPR 2018).

Each segment feature is scored on its own by an MLP (D -> 512 -> 32 -> 1). As in the paper, the
first layer has a ReLU, the last a sigmoid, and dropout 0.6 sits between the layers; the
middle layer is linear (the authors' Keras code gives it no activation). The ranking loss
pushes the top segment of an anomalous video above the top segment of a normal one.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dualvad.scorer.refinevad import ScorerOutput, resolve_mask

__all__ = ["MILRankingScorer", "sultani_ranking_loss"]


class MILRankingScorer(nn.Module):
    """Per-segment MLP scorer; same call signature and output type as RefineVAD.

    ``features`` in the output are the 32-d penultimate activations; ``category_logits`` is
    None (the baseline has no category head).
    """

    def __init__(self, feature_dim: int, dropout: float = 0.6) -> None:
        super().__init__()
        self.feature_dim = feature_dim
        self.body = nn.Sequential(
            nn.Linear(feature_dim, 512),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(512, 32),
            nn.Dropout(dropout),
        )
        self.head = nn.Linear(32, 1)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> ScorerOutput:
        """Args: x (B, K, D) float32; mask (B, K) bool (True = real segment) or None.

        Returns: ScorerOutput with scores (B, K) in [0, 1] (0 on padding), no category
        logits, features (B, K, 32).
        """
        if x.dim() != 3 or x.shape[-1] != self.feature_dim:
            raise ValueError(f"x must be (B, K, {self.feature_dim}), got shape {tuple(x.shape)}")
        full_mask = resolve_mask(x, mask)
        h = self.body(x)
        scores = torch.sigmoid(self.head(h).squeeze(-1)) * full_mask.to(h.dtype)
        return ScorerOutput(segment_scores=scores, category_logits=None, features=h)


def sultani_ranking_loss(
    scores_abnormal: Tensor,
    scores_normal: Tensor,
    lambda_smooth: float = 8e-5,
    lambda_sparse: float = 8e-5,
) -> Tensor:
    """Deep MIL ranking loss, averaged over (abnormal, normal) video pairs.

    Per pair i: ``max(0, 1 - max_t a_it + max_t n_it)
    + lambda_smooth * sum_t (a_it - a_i(t+1))^2 + lambda_sparse * sum_t a_it``.

    Args:
        scores_abnormal: (B, K) scores in [0, 1] of anomalous videos (padding scored 0).
        scores_normal: (B, K) scores of the normal videos they are paired with.
        lambda_smooth: weight of the temporal smoothness term (8e-5 in the paper).
        lambda_sparse: weight of the sparsity term (8e-5 in the paper).

    Returns: scalar tensor.
    """
    if scores_abnormal.dim() != 2 or scores_abnormal.shape[0] != scores_normal.shape[0]:
        raise ValueError(
            f"expected two (B, K) tensors with the same B, got {tuple(scores_abnormal.shape)} "
            f"and {tuple(scores_normal.shape)}"
        )
    hinge = torch.relu(1.0 - scores_abnormal.amax(dim=1) + scores_normal.amax(dim=1))
    smooth = (scores_abnormal[:, 1:] - scores_abnormal[:, :-1]).pow(2).sum(dim=1)
    sparse = scores_abnormal.sum(dim=1)
    return (hinge + lambda_smooth * smooth + lambda_sparse * sparse).mean()
