"""From what a VLM said about a video's sampled frames and clips to segment and video scores (pure).

- A sampled frame's score is the model's P("Yes") to the image question (the image benchmark's head).
- A segment's score is the mean score of its sampled frames; a segment without any (budget N < K) takes
  the score interpolated linearly between the nearest sampled frames, at its centre frame.
- The video's score is its highest clip abnormality score (the video benchmark's head), divided by 10.
- A video is called anomalous when its score is at or above :data:`SERVING_THRESHOLD` in the evaluation
  report's decisions; the online detector, the HTTP API and ``dualvad detect`` decide with the run's fitted
  verdict (:mod:`dualvad.eval.verdict`), whose fallback before a run is evaluated is this threshold too.
"""

from __future__ import annotations

import numpy as np

#: video_score at or above which a video is called anomalous in the report, and by the scorer alone.
SERVING_THRESHOLD = 0.5
#: The scales of a VLM's scores, as the report states them (see the module docstring).
VLM_VIDEO_SCORE = "the highest clip's 0-10 abnormality score (expected digit) / 10, in [0, 1]"
VLM_FRAME_SCORE = ('P("Yes") to the image question per sampled frame; a segment takes the mean of its '
                   "sampled frames (interpolated where it has none), in [0, 1]")


def segment_scores_from_samples(bounds: np.ndarray, frames: np.ndarray,
                                frame_scores: np.ndarray) -> np.ndarray:
    """bounds int (K, 2) ``[start, end)``; frames int (N,) sorted, N >= 1; frame_scores float (N,) ->
    float32 (K,) segment scores (see the module docstring)."""
    bounds = np.asarray(bounds, dtype=np.int64)
    frames = np.asarray(frames, dtype=np.int64)
    frame_scores = np.asarray(frame_scores, dtype=np.float64)
    if len(frames) == 0 or len(frames) != len(frame_scores):
        raise ValueError(f"need one score per sampled frame and at least one frame, got {len(frames)} frames "
                         f"and {len(frame_scores)} scores")
    segment = np.searchsorted(bounds[:, 1], frames, side="right")
    counts = np.bincount(segment, minlength=len(bounds))
    sums = np.bincount(segment, weights=frame_scores, minlength=len(bounds))
    centres = (bounds[:, 0] + bounds[:, 1] - 1) / 2.0
    interpolated = np.interp(centres, frames, frame_scores)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / counts
    return np.where(counts > 0, means, interpolated).astype(np.float32)


def video_score_from_clips(clip_scores: np.ndarray) -> float:
    """The highest 0-10 clip abnormality score, scaled to [0, 1]."""
    clip_scores = np.asarray(clip_scores, dtype=np.float64)
    if clip_scores.size == 0:
        raise ValueError("a video needs at least one judged clip for a video-level score")
    return float(clip_scores.max() / 10.0)


def top_positions(scores: np.ndarray, count: int) -> np.ndarray:
    """int64 (min(count, N),): positions of the highest scores, best first (ties: earlier first)."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    return order[:count].astype(np.int64)
