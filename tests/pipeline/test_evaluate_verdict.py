"""The evaluate stage's verdict parts without Ray: the fit on validation results, the verdict's row and its
metrics, and which VLM row is combined (the shared evaluated run falls back to the scorer alone: its 2
validation videos are too few, so the fitted path is checked here)."""

from __future__ import annotations

import numpy as np
import pytest

from dualvad.eval.results import ModelResult, VideoResult
from dualvad.eval.verdict import FITTED, Verdict, apply, fit_verdict
from dualvad.pipeline.evaluate_models import ModelSpec
from dualvad.pipeline.evaluate_verdict import (
    SAME_VIDEOS,
    SCORER_PICKED,
    VLM_SAW_THEM,
    fit_run_verdict,
    verdict_metrics,
    verdict_result,
    verdict_spec,
)

OWN = ModelSpec("vlm/focused", "runs/r", "runs/r/finetune/final", "focused")
FOLDER = ModelSpec("vlm/focused", None, "/models/tiny", "focused")


def _video(video_id: str, label: str, segments: list[float], score: float | None = None) -> VideoResult:
    bounds = np.array([[4 * i, 4 * i + 4] for i in range(len(segments))], dtype=np.int64)
    scores = np.array(segments, dtype=np.float32)
    return VideoResult(video_id, label, 4 * len(segments), 4.0, [], bounds, scores,
                       float(scores.max()) if score is None else score)


LABELS = ["Normal", "Normal", "Normal", "Fight", "Fight", "Fight"]
SCORER = [_video(f"v{i}", label, [0.05, s]) for i, (label, s) in
          enumerate(zip(LABELS, [0.3, 0.6, 0.5, 0.55, 0.45, 0.7], strict=True))]
VLM = [_video(f"v{i}", label, [0.5, 0.5], v) for i, (label, v) in
       enumerate(zip(LABELS, [0.1, 0.2, 0.15, 0.8, 0.9, 0.7], strict=True))]


def test_the_fit_is_fit_verdict_on_the_videos_both_models_scored():
    verdict = fit_run_verdict(SCORER, VLM, OWN, "")
    expected = fit_verdict(np.array([v.video_score for v in SCORER]), np.array([v.video_score for v in VLM]),
                           np.array([0, 0, 0, 1, 1, 1]))
    assert verdict.source == FITTED and verdict.vlm_used  # this VLM ranks the videos better
    assert (verdict.scorer_weight, verdict.vlm_weight, verdict.bias, verdict.threshold) == (
        expected.scorer_weight, expected.vlm_weight, expected.bias, expected.threshold)
    assert verdict.vlm_row == "vlm/focused" and verdict.validation_ids == ("v0", "v1", "v2", "v3", "v4", "v5")
    # the run's own fine-tuned VLM saw the validation videos in its benchmarks: recorded
    assert verdict.caveats == (SCORER_PICKED, SAME_VIDEOS, VLM_SAW_THEM)
    assert fit_run_verdict(SCORER, VLM, FOLDER, "").caveats == (SCORER_PICKED, SAME_VIDEOS)
    # a scorer that kept its last checkpoint (scorer.checkpoint=last) chose nothing on the validation videos
    assert fit_run_verdict(SCORER, VLM, FOLDER, "", scorer_picked=False).caveats == (SAME_VIDEOS,)
    # a video the VLM could not judge is left out of the fit
    fewer = fit_run_verdict(SCORER, VLM[1:], OWN, "")
    assert fewer.validation_ids == ("v1", "v2", "v3", "v4", "v5") and fewer.validation_videos == 5


def test_no_validation_videos_give_the_scorer_alone_with_the_reason():
    verdict = fit_run_verdict([], [], OWN, "train-scorer held out no validation videos")
    assert (verdict.source, verdict.scorer_weight, verdict.vlm_weight, verdict.bias, verdict.threshold) == (
        "scorer-only", 1.0, 0.0, 0.0, 0.5)
    assert verdict.reason == ("no validation videos to fit on: train-scorer held out no validation videos; "
                              "the scorer alone at threshold 0.5")
    assert verdict.caveats == () and verdict.vlm_row == "vlm/focused"


def test_the_row_applies_the_verdict_to_each_segment_and_each_video():
    verdict = Verdict(FITTED, 2.0, 0.0, -1.0, 0.3, False, "the VLM's fitted weight is -0.1 (...)")
    scorer = ModelResult("scorer", SCORER)
    row = verdict_result(verdict, scorer, ModelResult("vlm/focused", VLM[:4]))
    assert [v.video_id for v in row.videos] == ["v0", "v1", "v2", "v3"]  # those both models scored
    for got, source, vlm in zip(row.videos, SCORER, VLM, strict=False):
        expected = apply(verdict, source.segment_scores, vlm.video_score).astype(np.float32)
        np.testing.assert_array_equal(got.segment_scores, expected)
        assert got.video_score == float(apply(verdict, source.video_score, vlm.video_score))
        # sigmoid(2 logit(s) - 1): by hand for s = 0.5, sigmoid(-1)
    assert row.videos[2].video_score == pytest.approx(1 / (1 + np.exp(1.0)), rel=1e-12)
    assert row.name == "verdict"
    assert row.info.warning == "the VLM's weight is 0: the VLM's fitted weight is -0.1 (...)"
    metrics = verdict_metrics(verdict, row)
    # scores 0.0633 (v0: s 0.3), 0.4528 (v1: 0.6), 0.2689 (v2: 0.5), 0.3546 (v3: 0.55) at 0.3: N, A, N, A
    # against N, N, N, A: 3 of 4 right; recall 1 of 1 anomalous and 2 of 3 normal
    assert metrics["test"] == {"videos": 4, "accuracy": 0.75, "balanced_accuracy": pytest.approx(5 / 6)}
    assert {k: v for k, v in metrics.items() if k != "test"} == verdict.to_dict()


def test_the_verdict_combines_the_row_on_the_runs_own_strategy():
    rows = [ModelSpec("vlm/uniform", None, "m", "uniform"), ModelSpec("vlm/focused", None, "m", "focused")]
    assert verdict_spec(rows, "focused") is rows[1]
    assert verdict_spec(rows, "cdf") is rows[0]  # not evaluated on the run's frames: the first row
