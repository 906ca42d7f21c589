"""One video's detection from the detector's two halves (:mod:`dualvad.detector`): what the CPU half found
(:class:`Analysis`), the VLM's answers, and the verdict that combines them into the answer.

The verdict is the run's (``RUN/eval/verdict.json``, fitted on validation videos by the evaluate stage:
:mod:`dualvad.eval.verdict`); a run not evaluated yet has none, and the scorer alone decides at 0.5
(:func:`load_verdict` says why). So ``video_score`` is the combined probability
``sigmoid(a logit(scorer's video score) + b logit(VLM's video score) + c)``, each segment's ``score`` the
same formula on its scorer score, and ``is_anomalous`` compares ``video_score`` with the fitted threshold,
unless the request names its own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from dualvad import paths
from dualvad.detector_schema import (
    ClipOut,
    DetectionResult,
    FrameOut,
    SegmentOut,
    VerdictOut,
    VideoOut,
)
from dualvad.eval.scoring import segment_scores_from_samples, video_score_from_clips
from dualvad.eval.verdict import Verdict, apply, scorer_only
from dualvad.rundir import RunDir
from dualvad.vlm.judge import Judgement

NO_VERDICT = "a detection made without a run's verdict"  # Analysis' default (tests, stand-ins)


def load_verdict(run: RunDir) -> Verdict:
    """``RUN/eval/verdict.json``, or the scorer alone with the reason when the run has none."""
    if not run.exists(paths.EVAL, paths.VERDICT_FILE):
        return scorer_only(f"{run.path(paths.EVAL, paths.VERDICT_FILE)} does not exist (run `dualvad "
                           "evaluate` to fit the verdict on validation videos): the scorer alone at 0.5")
    with run.fs.open_input_stream(run.path(paths.EVAL, paths.VERDICT_FILE)) as stream:
        return Verdict.from_dict(json.loads(stream.read()))


@dataclass
class VideoInfo:
    num_frames: int
    fps: float  # as the container reports
    duration_s: float  # num_frames / fps


@dataclass
class Analysis:
    """The CPU part of a detection (no VLM)."""

    video: VideoInfo
    bounds: np.ndarray  # int64 (K, 2) segment [start, end) frames
    segment_scores: np.ndarray  # float32 (K,) the scorer's scores in [0, 1]
    category: str | None  # the category head's most probable anomaly category; None: no head
    frames: np.ndarray  # int64 (N,) sampled frame indices, sorted
    jpegs: list[bytes]  # the N sampled frames as JPEG, longer side = the run's image_size
    timings_ms: dict[str, float]  # "decode_features", "scorer", "allocation", "frames"
    video_id: str = ""  # the id the sampler was seeded with (corpus id, or the file name)
    strategy: str = ""  # the sampling strategy used
    category_probability: float | None = None  # the head's probability of ``category``, in [0, 1]
    verdict: Verdict = scorer_only(NO_VERDICT)  # the run's (frozen: safe to share as a default)
    frames_decoded: int = 0  # frames the decoder produced for the features and the sampled frames


@dataclass
class Detection:
    """Analysis and judgement combined by the run's verdict (module docstring)."""

    analysis: Analysis
    judgement: Judgement
    video_score: float  # the verdict's probability, in [0, 1]
    is_anomalous: bool  # video_score >= the threshold (the request's, else the verdict's)
    vlm_segment_scores: np.ndarray  # float32 (K,) evaluate's segment scores from the frame scores
    segment_scores: np.ndarray  # float32 (K,) the verdict on each segment
    vlm_score: float  # the VLM's video score: highest clip score / 10
    threshold: float  # the one is_anomalous used

    def result(self, models: dict[str, str | None]) -> DetectionResult:
        """The JSON answer of ``dualvad detect`` and ``POST /v1/detect``; ``models``: ``{"run", "vlm"}``."""
        analysis, judgement = self.analysis, self.judgement
        fps, frames = analysis.video.fps, analysis.frames
        segments = [SegmentOut(index=i, start_frame=start, end_frame=end, start_s=start / fps,
                               end_s=end / fps, score=float(self.segment_scores[i]),
                               vlm_score=float(self.vlm_segment_scores[i]),
                               scorer_score=float(analysis.segment_scores[i]))
                    for i, (start, end) in enumerate(analysis.bounds.tolist())]
        clips = [ClipOut(start_s=int(frames[start]) / fps, end_s=(int(frames[end - 1]) + 1) / fps,
                         score=float(score), explanation=text)
                 for start, end, score, text in zip(judgement.clip_starts, judgement.clip_ends,
                                                    judgement.clip_scores, judgement.explanations,
                                                    strict=True)]
        verdict = analysis.verdict
        return DetectionResult(
            video=VideoOut(frames=analysis.video.num_frames, fps=fps, duration_s=analysis.video.duration_s),
            video_score=self.video_score, is_anomalous=self.is_anomalous,
            scorer_score=float(analysis.segment_scores.max()), vlm_score=self.vlm_score,
            category=analysis.category, category_probability=analysis.category_probability,
            verdict=VerdictOut(source=verdict.source, scorer_weight=verdict.scorer_weight,
                               vlm_weight=verdict.vlm_weight, bias=verdict.bias, threshold=self.threshold,
                               vlm_used=verdict.vlm_used, reason=verdict.reason),
            segments=segments,
            frames=[FrameOut(index=f, seconds=f / fps, p_yes=p)
                    for f, p in zip(frames.tolist(), judgement.frame_scores.tolist(), strict=True)],
            clips=clips, timings_ms={**analysis.timings_ms, **judgement.timings_ms}, models=models)


def combine(analysis: Analysis, judgement: Judgement, threshold: float | None = None) -> Detection:
    """The answer's scores: the VLM's segment and video scores as evaluate computes them, and the verdict
    (``analysis.verdict``) on them and the scorer's; ``threshold`` ``None``: the verdict's."""
    vlm_score = video_score_from_clips(np.asarray(judgement.clip_scores))
    vlm_segments = segment_scores_from_samples(analysis.bounds, analysis.frames, judgement.frame_scores)
    verdict = analysis.verdict
    scorer_score = float(np.max(analysis.segment_scores))
    video_score = float(apply(verdict, scorer_score, vlm_score))
    segments = apply(verdict, analysis.segment_scores, vlm_score).astype(np.float32)
    threshold = verdict.threshold if threshold is None else float(threshold)
    return Detection(analysis, judgement, video_score, bool(video_score >= threshold), vlm_segments, segments,
                     vlm_score, threshold)
