"""The verdict's pure functions (dualvad.eval.verdict): hand-computed values and every rule."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from dualvad.eval.verdict import (
    EPS,
    FITTED,
    SCORER_ONLY,
    Verdict,
    accuracy,
    apply,
    balanced_accuracy,
    choose_threshold,
    fit_verdict,
    logit,
    scorer_only,
)

LABELS = np.array([0, 0, 0, 1, 1, 1])
SCORER = np.array([0.1, 0.2, 0.3, 0.8, 0.9, 0.95])  # separates the classes: validation AUC 1


def test_logit_of_known_values_and_the_clip():
    assert logit(0.5) == 0.0
    assert logit(0.75) == pytest.approx(math.log(3.0), abs=1e-15)
    assert logit(0.0) == pytest.approx(math.log(EPS / (1 - EPS)), abs=1e-12)
    assert logit(1.0) == pytest.approx(-math.log(EPS / (1 - EPS)), abs=1e-12)


def test_apply_is_the_logistic_formula():
    verdict = Verdict(FITTED, 2.0, 1.0, -math.log(3.0), 0.5, True, "")
    # sigmoid(2 * ln 3 + 1 * 0 - ln 3) = sigmoid(ln 3) = 3 / 4
    assert apply(verdict, 0.75, 0.5) == pytest.approx(0.75, abs=1e-15)
    # segments (K,) with the video's one VLM score: sigmoid(2 * 0 + ln 3 - ln 3) = 1 / 2
    assert apply(verdict, np.array([0.5, 0.75]), 0.75).tolist() == pytest.approx([0.5, 0.9], abs=1e-15)


def test_the_fallback_is_the_scorer_score_itself():
    fallback = scorer_only("why")
    assert (fallback.source, fallback.scorer_weight, fallback.vlm_weight, fallback.bias) == (
        SCORER_ONLY, 1.0, 0.0, 0.0)
    assert (fallback.threshold, fallback.vlm_used, fallback.reason) == (0.5, False, "why")
    assert apply(fallback, np.array([0.2, 0.9]), 0.99).tolist() == pytest.approx([0.2, 0.9], abs=1e-12)


def test_threshold_is_the_best_midpoint():
    assert choose_threshold(np.array([0.1, 0.4, 0.6, 0.9]), np.array([0, 0, 1, 1])) == pytest.approx(0.5)


def test_threshold_ties_go_to_the_lowest():
    # candidates 0.15 (BA 0.75), 0.25 (BA 0.5), 0.35 (BA 0.75): the lowest of the best
    assert choose_threshold(np.array([0.1, 0.2, 0.3, 0.4]), np.array([0, 1, 0, 1])) == pytest.approx(0.15)


def test_threshold_without_a_candidate_is_one_half():
    assert choose_threshold(np.array([0.3, 0.3, 0.3]), np.array([0, 1, 1])) == 0.5


def test_balanced_accuracy_and_accuracy():
    labels = np.array([1, 1, 1, 1, 0, 0])
    decisions = np.array([True, True, True, False, True, False])
    assert balanced_accuracy(labels, decisions) == pytest.approx((3 / 4 + 1 / 2) / 2)
    assert accuracy(labels, decisions) == pytest.approx(4 / 6)
    assert balanced_accuracy(np.array([0, 0]), np.array([False, True])) == 0.5  # one class: its recall


def test_too_few_validation_videos_give_the_scorer_alone():
    verdict = fit_verdict(np.array([0.1, 0.2, 0.9]), np.array([0.5, 0.5, 0.5]), np.array([0, 0, 1]))
    assert (verdict.source, verdict.scorer_weight, verdict.vlm_weight, verdict.bias) == (
        SCORER_ONLY, 1.0, 0.0, 0.0)
    assert verdict.threshold == 0.5 and not verdict.vlm_used
    assert verdict.reason == ("validation holds 1 anomalous and 2 normal videos; a fit needs at least 2 of "
                              "each: the scorer alone at threshold 0.5")
    assert (verdict.validation_videos, verdict.validation_anomalous) == (3, 1)
    assert (verdict.auc_scorer, verdict.auc_vlm, verdict.auc_combined) == (1.0, 0.5, 1.0)


def test_one_class_validation_gives_the_scorer_alone_with_undefined_aucs():
    verdict = fit_verdict(np.array([0.1, 0.2]), np.array([0.5, 0.6]), np.array([0, 0]))
    assert verdict.source == SCORER_ONLY and verdict.auc_scorer is None and verdict.auc_vlm is None
    assert verdict.reason.startswith("validation holds 0 anomalous and 2 normal videos")


def test_a_vlm_against_the_labels_gets_weight_zero():
    vlm = np.array([0.5, 0.9, 0.1, 0.2, 0.6, 0.4])  # AUC 4/9
    verdict = fit_verdict(SCORER, vlm, LABELS)
    assert verdict.source == FITTED and verdict.vlm_weight == 0.0 and not verdict.vlm_used
    assert verdict.scorer_weight > 0
    assert verdict.reason.startswith("the VLM's fitted weight is -")
    assert (verdict.auc_scorer, verdict.auc_combined) == (1.0, 1.0)
    assert verdict.auc_vlm == pytest.approx(4 / 9)
    # separable: the threshold is the midpoint between the highest normal and the lowest anomalous video
    low, high = apply(verdict, np.array([0.3, 0.8]), vlm[[2, 3]])
    assert verdict.threshold == pytest.approx((low + high) / 2, abs=1e-15)


def test_a_vlm_that_cannot_raise_a_perfect_scorer_gets_weight_zero():
    vlm = np.array([0.1, 0.3, 0.2, 0.7, 0.9, 0.8])  # agrees with the scorer: a positive weight, AUC 1 too
    verdict = fit_verdict(SCORER, vlm, LABELS)
    assert verdict.vlm_weight == 0.0 and not verdict.vlm_used
    assert verdict.reason == ("the VLM does not raise the validation video AUC (scorer 1.0000, combined "
                              "1.0000)")


def test_a_vlm_that_raises_the_auc_is_used():
    scorer = np.array([0.3, 0.6, 0.5, 0.55, 0.45, 0.7])  # AUC 6/9
    vlm = np.array([0.1, 0.2, 0.15, 0.8, 0.9, 0.7])  # AUC 1
    verdict = fit_verdict(scorer, vlm, LABELS)
    assert verdict.source == FITTED and verdict.vlm_used and verdict.reason == ""
    assert verdict.vlm_weight > 0 and verdict.scorer_weight > 0
    assert (verdict.auc_scorer, verdict.auc_vlm, verdict.auc_combined) == pytest.approx((2 / 3, 1.0, 1.0))
    probabilities = apply(verdict, scorer, vlm)
    assert verdict.threshold == choose_threshold(probabilities, LABELS)
    assert ((probabilities >= verdict.threshold) == LABELS.astype(bool)).all()


def test_a_scorer_without_signal_and_no_usable_vlm_falls_back():
    scorer = np.array([0.4, 0.6, 0.5, 0.6, 0.4, 0.5])  # the same scores in both classes: weight 0
    verdict = fit_verdict(scorer, np.full(6, 0.5), LABELS)
    assert verdict.source == SCORER_ONLY and verdict.threshold == 0.5
    assert verdict.reason.startswith("the scorer's fitted weight is ")


def test_the_fit_is_deterministic():
    vlm = np.array([0.5, 0.9, 0.1, 0.2, 0.6, 0.4])
    assert fit_verdict(SCORER, vlm, LABELS) == fit_verdict(SCORER, vlm, LABELS)


def test_json_round_trip():
    verdict = Verdict(FITTED, 1.5, 0.0, -0.25, 0.4, False, "reason", 6, 3, 1.0, 0.5, 1.0, "vlm/focused",
                      ("a", "b"), ("the VLM saw them",))
    text = json.dumps(verdict.to_dict())
    assert json.loads(text)["validation_ids"] == ["a", "b"]
    assert Verdict.from_dict(json.loads(text)) == verdict
    with pytest.raises(TypeError):
        Verdict.from_dict({**verdict.to_dict(), "unknown": 1})
