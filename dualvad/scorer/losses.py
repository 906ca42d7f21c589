"""Weakly supervised losses for segment scorers (video-level labels only).

Shapes: ``B`` videos, ``K`` segments, ``C`` categories. Scores are probabilities in [0, 1].
Masks are (B, K) bool with ``True`` = real segment (see :mod:`dualvad.scorer.refinevad`);
``None`` means every segment is real.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from dualvad.scorer.config import ScorerConfig
from dualvad.scorer.refinevad import ScorerOutput, resolve_mask

__all__ = [
    "category_loss",
    "refinevad_loss",
    "smoothness_loss",
    "sparsity_loss",
    "topk_mil_loss",
]


def topk_mil_loss(
    segment_scores: Tensor, labels: Tensor, k: int, mask: Tensor | None = None
) -> Tensor:
    """BCE between the mean of each video's top-k segment scores and its video label.

    Args:
        segment_scores: (B, K) float in [0, 1].
        labels: (B,) float, 1 = anomalous video, 0 = normal.
        k: segments averaged per video; capped at K, and at a video's real segments when a
            mask is given.
        mask: (B, K) bool, True = real segment, or None.

    Returns: scalar tensor, mean over videos (nats).
    """
    if k < 1:
        raise ValueError(f"k ({k}) must be >= 1")
    mask = resolve_mask(segment_scores, mask)
    k = min(k, segment_scores.shape[1])
    # scores are >= 0, so -1 marks padding that slipped into a video's top k
    top = segment_scores.masked_fill(~mask, -1.0).topk(k, dim=1).values
    real = (top >= 0).to(top.dtype)
    video_scores = (top * real).sum(dim=1) / real.sum(dim=1)
    return F.binary_cross_entropy(video_scores, labels.to(video_scores.dtype))


def category_loss(category_logits: Tensor, category_index: Tensor, known: Tensor) -> Tensor:
    """Cross-entropy over the videos whose category is known.

    Args:
        category_logits: (B, C) float.
        category_index: (B,) long in [0, C) (0 = Normal); ignored where ``known`` is False.
        known: (B,) bool.

    Returns: scalar tensor, mean over known videos (nats); a zero that still belongs to the
    graph when no video is known, so ``backward`` works on any batch.
    """
    known = known.to(torch.bool)
    if not bool(known.any()):
        return category_logits.sum() * 0.0
    return F.cross_entropy(category_logits[known], category_index[known].long())


def smoothness_loss(scores: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean squared difference between neighbouring segment scores.

    Args: scores (B, K) float; mask (B, K) bool or None (pairs touching padding are skipped).

    Returns: scalar tensor (squared score units); 0 when there is no pair.
    """
    mask = resolve_mask(scores, mask)
    pairs = (mask[:, 1:] & mask[:, :-1]).to(scores.dtype)
    squared = (scores[:, 1:] - scores[:, :-1]).pow(2)
    return (squared * pairs).sum() / pairs.sum().clamp_min(1.0)


def sparsity_loss(scores: Tensor, labels: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean segment score of the anomalous videos (anomalies should be rare in time).

    Args: scores (B, K) float; labels (B,) float 0/1; mask (B, K) bool or None.

    Returns: scalar tensor: the mean over anomalous videos of each one's mean real-segment
    score; a graph-connected 0 when the batch has no anomalous video.
    """
    mask = resolve_mask(scores, mask)
    anomalous = labels > 0.5
    if not bool(anomalous.any()):
        return scores.sum() * 0.0
    weights = mask[anomalous].to(scores.dtype)
    per_video = (scores[anomalous] * weights).sum(dim=1) / weights.sum(dim=1)
    return per_video.mean()


def refinevad_loss(
    output: ScorerOutput,
    labels: Tensor,
    category_index: Tensor,
    known: Tensor,
    config: ScorerConfig,
    mask: Tensor | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """Weighted sum of top-k MIL (weight 1), category, smoothness and sparsity losses.

    Args:
        output: scorer output; ``category_logits`` None skips the category part.
        labels: (B,) float, 1 = anomalous video.
        category_index: (B,) long, 0 = Normal; used where ``known``.
        known: (B,) bool, whether the video's category is known.
        config: ``topk`` (k of :func:`topk_mil_loss`) and the part weights ``category_weight``,
            ``smoothness_weight``, ``sparsity_weight``.
        mask: (B, K) bool, True = real segment, or None.

    Returns: ``(total, parts)``: total a scalar tensor to backpropagate; parts the unweighted
    values of ``mil``, ``category``, ``smoothness``, ``sparsity`` and the weighted ``total``,
    as Python floats for logging.
    """
    scores = output.segment_scores
    parts = {
        "mil": topk_mil_loss(scores, labels, config.topk, mask),
        "smoothness": smoothness_loss(scores, mask),
        "sparsity": sparsity_loss(scores, labels, mask),
    }
    if output.category_logits is not None:
        parts["category"] = category_loss(output.category_logits, category_index, known)
    else:
        parts["category"] = scores.sum() * 0.0
    total = (
        parts["mil"]
        + config.category_weight * parts["category"]
        + config.smoothness_weight * parts["smoothness"]
        + config.sparsity_weight * parts["sparsity"]
    )
    logged = {name: float(value.detach()) for name, value in parts.items()}
    logged["total"] = float(total.detach())
    return total, logged
