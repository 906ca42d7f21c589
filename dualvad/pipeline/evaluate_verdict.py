"""The evaluate stage's verdict (:mod:`dualvad.pipeline.evaluate`): which videos it is fitted on, which VLM
row it combines with the scorer, the fit (:func:`dualvad.eval.verdict.fit_verdict`) and its own row.

The validation videos are the ones train-scorer held out of its training videos
(:func:`dualvad.scorer.data.held_out_validation` with the ``scorer.val_share`` and ``scorer.seed`` that
``RUN/scorer``'s record holds, on ``RUN/segments``): never the test split, and never a video the scorer's
weights were fitted on. The VLM row is the one on the run's own sampling strategy (the one ``dualvad
detect`` and serve use), else the first. What makes the fitted figures optimistic is recorded in the
verdict's ``caveats``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace

import numpy as np

from dualvad import paths
from dualvad import schema as S
from dualvad.detector import scored_with
from dualvad.eval.results import ModelInfo, ModelResult, VideoResult
from dualvad.eval.verdict import Verdict, accuracy, apply, balanced_accuracy, fit_verdict, scorer_only
from dualvad.pipeline.evaluate_models import ModelSpec
from dualvad.rundir import RunDir
from dualvad.scorer.data import (
    held_out_validation,
    labelled_training_videos,
    training_segments,
    video_set_from_segments,
)
from dualvad.stages.records import read_input, read_record

log = logging.getLogger(__name__)

VERDICT_ROW = "verdict"
SCORER_PICKED = ("the scorer picked its best checkpoint by validation loss on these videos: its validation "
                 "AUC, hence its weight, is somewhat optimistic")  # scorer.checkpoint=val_loss only
SAME_VIDEOS = "the weights and the threshold are fitted and their validation AUCs measured on the same videos"
VLM_SAW_THEM = ("the VLM was fine-tuned on the train split's benchmarks, which hold these validation videos: "
                "its validation AUC, hence its weight, is optimistic (the test row is not)")


def validation_ids(run: RunDir) -> tuple[list[str], str]:
    """(the scorer's held-out validation video ids, sorted; why there are none, "" when there are).

    From ``RUN/segments`` and the ``scorer.val_share`` / ``scorer.seed`` of the run whose scorer scored this
    one (``RUN/scores``' ``score.scorer_run``, else this run)."""
    settings = _scorer_settings(run)
    if "val_share" not in settings or "seed" not in settings:
        return [], f"{run.path(paths.SCORER)}'s record names no scorer.val_share and scorer.seed"
    table = read_input(run, paths.SEGMENTS, unique=(S.VIDEO_ID, S.SEGMENT_INDEX))
    videos = labelled_training_videos(video_set_from_segments(training_segments(table)))
    if len(np.unique(videos.labels)) < 2:
        return [], "the train split does not hold both classes: train-scorer held out no validation videos"
    _, held = held_out_validation(videos, float(settings["val_share"]), int(settings["seed"]))
    if held is None:
        return [], ("train-scorer held out no validation videos (too few training videos to hold out both "
                    "classes)")
    return sorted(held.video_ids), ""


def verdict_spec(specs: list[ModelSpec], strategy: str) -> ModelSpec:
    """The VLM row the verdict combines: the first on the run's sampling strategy, else the first."""
    return next((spec for spec in specs if spec.strategy == strategy), specs[0])


def scorer_picked_on_validation(run: RunDir) -> bool:
    """Whether the scorer that scored ``run`` chose its checkpoint by validation loss (``scorer.checkpoint``;
    a record from before the setting: it did, that was the rule then)."""
    return _scorer_settings(run).get("checkpoint", "val_loss") == "val_loss"


def _scorer_settings(run: RunDir) -> dict:
    """The ``scorer.*`` settings recorded by the run whose scorer scored ``run`` ({} without a record)."""
    return (read_record(scored_with(run), paths.SCORER) or {}).get("settings") or {}


def fit_run_verdict(scorer: list[VideoResult], vlm: list[VideoResult], spec: ModelSpec,
                    why_none: str, scorer_picked: bool = True) -> Verdict:
    """The verdict on the validation videos both models scored (``scorer`` and ``vlm``: their results on
    the validation videos; ``why_none``: why there are none to fit on, from :func:`validation_ids`;
    ``scorer_picked``: the scorer chose its checkpoint on them, :func:`scorer_picked_on_validation`)."""
    vlm_scores = {video.video_id: video.video_score for video in vlm}
    both = [video for video in scorer if video.video_id in vlm_scores]
    if not both:
        verdict = scorer_only(f"no validation videos to fit on: {why_none or 'the VLM scored none of them'}; "
                              "the scorer alone at threshold 0.5")
    else:
        verdict = fit_verdict(np.array([video.video_score for video in both]),
                              np.array([vlm_scores[video.video_id] for video in both]),
                              np.array([video.is_anomalous for video in both], dtype=np.int64))
    caveats = ([SCORER_PICKED] if scorer_picked else []) + [SAME_VIDEOS] + (
        [VLM_SAW_THEM] if spec.run_uri is not None else [])
    return replace(verdict, vlm_row=spec.name, validation_ids=tuple(video.video_id for video in both),
                   caveats=tuple(caveats) if both else ())


def verdict_result(verdict: Verdict, scorer: ModelResult, vlm: ModelResult) -> ModelResult:
    """The verdict's row on the test videos both models scored: each segment's score is the verdict on its
    scorer score and the video's VLM score (float32); the video score is the verdict on the two video scores
    (float64), which is the highest segment's (:mod:`dualvad.eval.verdict`) before that rounding."""
    vlm_scores = {video.video_id: video.video_score for video in vlm.videos}
    videos = []
    for video in scorer.videos:
        if video.video_id not in vlm_scores:
            continue
        vlm_score = vlm_scores[video.video_id]
        segments = apply(verdict, video.segment_scores, vlm_score).astype(np.float32)
        score = float(apply(verdict, video.video_score, vlm_score))
        videos.append(VideoResult(video.video_id, video.label, video.num_frames, video.fps,
                                  video.gt_intervals, video.segment_bounds, segments, score,
                                  annotated_frames=video.annotated_frames, snippets=video.snippets))
    return ModelResult(VERDICT_ROW, videos, info=_info(verdict), threshold=verdict.threshold)


def _info(verdict: Verdict) -> ModelInfo:
    how = (f"sigmoid({verdict.scorer_weight:.4g} logit(scorer) + {verdict.vlm_weight:.4g} "
           f"logit({verdict.vlm_row}) + {verdict.bias:.4g}), fitted on {verdict.validation_videos} "
           f"validation videos; anomalous at or above {verdict.threshold:.4g}")
    warning = "" if verdict.vlm_used else f"the VLM's weight is 0: {verdict.reason}"
    return ModelInfo(weights=f"the scorer and {verdict.vlm_row} combined ({verdict.source})", video_score=how,
                     frame_score="its segment: the same formula on the segment's scorer score",
                     no_explanation="the verdict gives no text (the VLM row's explanations are the VLM's)",
                     warning=warning)


def verdict_metrics(verdict: Verdict, result: ModelResult) -> dict:
    """metrics.json's ``verdict``: the fitted verdict and its test-split decisions at its threshold."""
    labels = np.array([video.is_anomalous for video in result.videos], dtype=np.int64)
    decisions = np.array([video.video_score >= verdict.threshold for video in result.videos])
    test = {"videos": len(labels), "accuracy": accuracy(labels, decisions) if len(labels) else None,
            "balanced_accuracy": balanced_accuracy(labels, decisions) if len(labels) else None}
    return {**verdict.to_dict(), "test": test}


def write_verdict(out: RunDir, verdict: Verdict) -> None:
    """``RUN/eval/verdict.json``: what ``dualvad detect`` and serve decide with."""
    out.write_text(json.dumps(verdict.to_dict(), indent=2), paths.VERDICT_FILE)
    log.info("evaluate: verdict %s (scorer weight %.4g, VLM weight %.4g, threshold %.4g)%s", verdict.source,
             verdict.scorer_weight, verdict.vlm_weight, verdict.threshold,
             f": {verdict.reason}" if verdict.reason else "")
