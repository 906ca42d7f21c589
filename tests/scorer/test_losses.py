"""Scorer losses on hand-worked inputs (float64, so the expected values are exact to ~1e-15)."""

from __future__ import annotations

import math

import pytest
import torch

from dualvad.scorer.config import ScorerConfig
from dualvad.scorer.losses import (
    category_loss,
    refinevad_loss,
    smoothness_loss,
    sparsity_loss,
    topk_mil_loss,
)
from dualvad.scorer.mil import sultani_ranking_loss
from dualvad.scorer.refinevad import ScorerOutput


def t(values: list) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


# --- topk_mil_loss ----------------------------------------------------------------------------


def test_topk_single_anomalous_video() -> None:
    # top-2 of [0.1, 0.9, 0.5] = {0.9, 0.5}, mean 0.7, BCE against 1 = -log(0.7)
    loss = topk_mil_loss(t([[0.1, 0.9, 0.5]]), t([1.0]), k=2)
    assert loss.item() == pytest.approx(-math.log(0.7), rel=1e-12)


def test_topk_batch_mean_over_videos() -> None:
    # anomalous: mean(0.9, 0.5) = 0.7 -> -log(0.7); normal: mean(0.6, 0.2) = 0.4 -> -log(0.6)
    scores = t([[0.1, 0.9, 0.5], [0.2, 0.6, 0.0]])
    loss = topk_mil_loss(scores, t([1.0, 0.0]), k=2)
    expected = (-math.log(0.7) - math.log(0.6)) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-12)


def test_topk_k_larger_than_k_segments_uses_all() -> None:
    loss = topk_mil_loss(t([[0.1, 0.9, 0.5]]), t([0.0]), k=10)  # mean 0.5
    assert loss.item() == pytest.approx(-math.log(0.5), rel=1e-12)


def test_topk_mask_skips_padding() -> None:
    # padding scored high must not be picked; a video with 1 real segment averages just it
    scores = t([[0.1, 0.9, 0.5, 0.99], [0.3, 0.0, 0.0, 0.0]])
    mask = torch.tensor([[True, True, True, False], [True, False, False, False]])
    loss = topk_mil_loss(scores, t([1.0, 1.0]), k=2, mask=mask)
    expected = (-math.log(0.7) - math.log(0.3)) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-12)


def test_topk_rejects_k_below_one() -> None:
    with pytest.raises(ValueError, match="k"):
        topk_mil_loss(t([[0.5]]), t([1.0]), k=0)


# --- category_loss ----------------------------------------------------------------------------


def test_category_loss_only_known_videos() -> None:
    # row 0: uniform over 3 -> log 3; row 1: softmax([ln 3, 0, 0])[0] = 3/5 -> -log 0.6;
    # row 2 is unknown and would add a huge loss if counted
    logits = t([[0.0, 0.0, 0.0], [math.log(3.0), 0.0, 0.0], [-50.0, 50.0, 0.0]])
    loss = category_loss(logits, torch.tensor([1, 0, 0]), torch.tensor([True, True, False]))
    assert loss.item() == pytest.approx((math.log(3.0) - math.log(0.6)) / 2, rel=1e-12)


def test_category_loss_none_known_is_zero_with_grad() -> None:
    logits = t([[1.0, 2.0], [3.0, 4.0]]).requires_grad_()
    loss = category_loss(logits, torch.tensor([0, 1]), torch.tensor([False, False]))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


# --- smoothness and sparsity ------------------------------------------------------------------


def test_smoothness_mean_squared_difference() -> None:
    # diffs: (1, -0.5) and (0, 0) -> squares 1, 0.25, 0, 0 -> mean 0.3125
    loss = smoothness_loss(t([[0.0, 1.0, 0.5], [0.2, 0.2, 0.2]]))
    assert loss.item() == pytest.approx(0.3125, rel=1e-12)


def test_smoothness_skips_pairs_with_padding() -> None:
    # only the pair (0.0, 1.0) is real -> 1.0
    mask = torch.tensor([[True, True, False]])
    assert smoothness_loss(t([[0.0, 1.0, 0.0]]), mask).item() == pytest.approx(1.0, rel=1e-12)


def test_sparsity_mean_over_anomalous_videos() -> None:
    # anomalous videos' means: 0.3 and 0.2 -> 0.25; the normal video is ignored
    scores = t([[0.2, 0.4], [0.9, 0.9], [0.1, 0.3]])
    loss = sparsity_loss(scores, t([1.0, 0.0, 1.0]))
    assert loss.item() == pytest.approx(0.25, rel=1e-12)


def test_sparsity_without_anomalous_videos_is_zero() -> None:
    scores = t([[0.2, 0.4]]).requires_grad_()
    loss = sparsity_loss(scores, t([0.0]))
    assert loss.item() == 0.0
    loss.backward()


# --- refinevad_loss ---------------------------------------------------------------------------


def test_refinevad_loss_weighted_sum_of_parts() -> None:
    scores = t([[0.1, 0.9, 0.5], [0.2, 0.6, 0.0]])
    logits = t([[0.0, 0.0, 0.0], [math.log(3.0), 0.0, 0.0]])
    output = ScorerOutput(scores, logits, torch.zeros(2, 3, 4))
    config = ScorerConfig(topk=2, category_weight=0.5, smoothness_weight=0.1, sparsity_weight=0.01)
    labels, known = t([1.0, 0.0]), torch.tensor([True, True])
    total, parts = refinevad_loss(output, labels, torch.tensor([1, 0]), known, config)
    mil = (-math.log(0.7) - math.log(0.6)) / 2
    category = (math.log(3.0) - math.log(0.6)) / 2
    smooth = (0.8**2 + 0.4**2 + 0.4**2 + 0.6**2) / 4
    sparse = 0.5
    assert parts["mil"] == pytest.approx(mil, rel=1e-12)
    assert parts["category"] == pytest.approx(category, rel=1e-12)
    assert parts["smoothness"] == pytest.approx(smooth, rel=1e-12)
    assert parts["sparsity"] == pytest.approx(sparse, rel=1e-12)
    expected = mil + 0.5 * category + 0.1 * smooth + 0.01 * sparse
    assert total.item() == pytest.approx(expected, rel=1e-12)
    assert parts["total"] == pytest.approx(expected, rel=1e-12)


def test_refinevad_loss_without_category_logits() -> None:
    scores = t([[0.1, 0.9, 0.5]]).requires_grad_()
    output = ScorerOutput(scores, None, torch.zeros(1, 3, 4))
    total, parts = refinevad_loss(output, t([1.0]), torch.tensor([3]), torch.tensor([True]),
                                  ScorerConfig(topk=2))
    assert parts["category"] == 0.0
    total.backward()
    assert scores.grad is not None


# --- Sultani ranking loss ---------------------------------------------------------------------


def test_sultani_ranking_loss_hand_worked() -> None:
    # pair 0: hinge 1 - 0.8 + 0.3 = 0.5; smooth 0.6^2 + 0.4^2 = 0.52; sparse 1.4
    # pair 1: hinge max(0, 1 - 1 + 0) = 0; smooth 0; sparse 3.0
    abnormal = t([[0.2, 0.8, 0.4], [1.0, 1.0, 1.0]])
    normal = t([[0.1, 0.3, 0.2], [0.0, 0.0, 0.0]])
    loss = sultani_ranking_loss(abnormal, normal, lambda_smooth=0.1, lambda_sparse=0.01)
    expected = ((0.5 + 0.1 * 0.52 + 0.01 * 1.4) + (0.0 + 0.0 + 0.01 * 3.0)) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-12)


def test_sultani_ranking_loss_paper_defaults() -> None:
    loss = sultani_ranking_loss(t([[0.2, 0.8, 0.4]]), t([[0.1, 0.3, 0.2]]))
    assert loss.item() == pytest.approx(0.5 + 8e-5 * 0.52 + 8e-5 * 1.4, rel=1e-12)
