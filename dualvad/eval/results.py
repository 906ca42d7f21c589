"""What evaluation produces, as plain values: one :class:`VideoResult` per test video and one
:class:`ModelResult` per evaluated model (the scorer baseline, the VLM with a sampling strategy ...).

The metrics, the ablation tables and the report all read these; nothing here knows of Ray.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dualvad.corpus.layout import NORMAL_LABEL, is_anomaly_label
from dualvad.eval.config import VeraSettings
from dualvad.eval.metrics import (
    concatenate_frames,
    frame_ap,
    frame_auc,
    frame_ground_truth,
    segment_scores_to_frames,
    video_auc,
)
from dualvad.eval.snippet_protocol import SnippetVideo, snippet_frame_auc, snippets_of
from dualvad.eval.vera import VeraVideo, vera_frame_auc

#: Every metric of a model (and of each of its categories), in table order.
METRICS: tuple[str, ...] = ("video_auc", "frame_auc", "frame_auc_vera", "frame_auc_16", "frame_ap")


@dataclass(frozen=True)
class Thumbnail:
    """One sampled frame shown in the report."""

    frame_index: int
    score: float  # the model's score of this frame, in [0, 1]
    jpeg: bytes


@dataclass
class VideoResult:
    """One test video as a model scored it.

    ``segment_bounds`` int64 (K, 2) half-open ``[start, end)`` frame ranges covering ``0 .. num_frames``;
    ``segment_scores`` float32 (K,) in [0, 1]; ``sampled_frames`` int64 (N,) sorted frame indices the model
    looked at, ``sampled_scores`` float32 (N,) its score of each (empty for the scorer baseline, which sees
    features, not frames); ``gt_intervals`` the annotated ``[start, end)`` frame ranges (empty = none);
    ``annotated_frames`` the frame count the annotation file states (VERA's ``UCF_Eval.json`` ``length``),
    ``None`` where it states none.
    """

    video_id: str
    label: str  # "Normal", an anomaly category or "unlabelled" (a video `dualvad detect` scored)
    num_frames: int
    fps: float
    gt_intervals: list[tuple[int, int]]
    segment_bounds: np.ndarray
    segment_scores: np.ndarray
    video_score: float  # in [0, 1]
    sampled_frames: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    sampled_scores: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    explanation: str = ""  # the model's generated text, kept as is (never parsed for a number)
    thumbnails: list[Thumbnail] = field(default_factory=list)
    annotated_frames: int | None = None
    snippets: int | None = None  # T of its feature files (the 16-frame protocol); None: decoded from video

    @property
    def is_anomalous(self) -> bool:
        """True for an anomaly category (not `Normal`, not `unlabelled`)."""
        return is_anomaly_label(self.label)

    @property
    def protocol_frames(self) -> int:
        """The VERA protocol's ``L``: the annotation file's frame count where it gives one (as VERA's
        evaluation reads it), else the decoded one."""
        return self.annotated_frames if self.annotated_frames is not None else self.num_frames

    def frame_scores(self) -> np.ndarray:
        """float32 (num_frames,): each segment's score repeated over its frames."""
        return segment_scores_to_frames(self.segment_scores, self.segment_bounds)


@dataclass(frozen=True)
class ModelInfo:
    """What the report says about a model beside its numbers (plain sentences; empty = not stated)."""

    weights: str = ""  # where the model comes from: a folder, a hub id, "RUN/scorer/model"
    video_score: str = ""  # how a video score is made, and its scale
    frame_score: str = ""  # how a frame (segment) score is made, and its scale
    no_explanation: str = ""  # why a video of this model has no explanation text
    warning: str = ""  # what a reader must know before the numbers, e.g. random weights of a preset


@dataclass
class ModelResult:
    """Every test video scored by one model; ``metrics`` maps a metric name (:data:`METRICS`) to its value,
    or ``None`` where it is undefined; ``categories`` maps each anomaly category to the same metrics over
    that category's videos plus all normal videos (see :func:`category_metrics`); ``info`` describes the
    model for the report."""

    name: str  # e.g. "scorer" or "vlm/focused"
    videos: list[VideoResult]
    metrics: dict[str, float | None] = field(default_factory=dict)
    categories: dict[str, dict[str, float | None]] = field(default_factory=dict)
    info: ModelInfo = field(default_factory=ModelInfo)
    threshold: float | None = None  # the row's own decision threshold (the verdict's); None: the serving one

    def category_videos(self, category: str) -> list[VideoResult]:
        """The videos a category's metrics are over: that category's and every normal one."""
        return category_videos(self.videos, category)


def video_level(model: ModelResult) -> tuple[np.ndarray, np.ndarray]:
    """(truth int8 (V,), scores float64 (V,)): one sample per video."""
    truth = np.array([video.is_anomalous for video in model.videos], dtype=np.int8)
    return truth, np.array([video.video_score for video in model.videos], dtype=np.float64)


def frame_level(model: ModelResult) -> tuple[np.ndarray, np.ndarray]:
    """(truth int8 (F,), scores float32 (F,)): all videos' frames concatenated, as the metrics do."""
    if not model.videos:
        return np.zeros(0, dtype=np.int8), np.zeros(0, dtype=np.float32)
    return concatenate_frames((v.segment_scores, v.segment_bounds, v.gt_intervals) for v in model.videos)


def category_videos(videos: list[VideoResult], category: str) -> list[VideoResult]:
    """``videos`` of label ``category`` or normal, in order: the subset a category's metrics are over."""
    return [v for v in videos if v.label in (category, NORMAL_LABEL)]


def snippet_videos(videos: list[VideoResult], convention: str) -> list[SnippetVideo]:
    """What the 16-frame protocol reads of ``videos`` (T by ``eval.snippet_count`` where not from files)."""
    return [SnippetVideo(v.segment_scores, v.segment_bounds,
                         snippets_of(v.num_frames, v.snippets, convention), v.gt_intervals) for v in videos]


def model_metrics(videos: list[VideoResult], features: dict[str, np.ndarray], vera: VeraSettings,
                  snippet_count: str = "ceil") -> tuple[dict[str, float | None], dict[str, str]]:
    """Every metric of one model over its videos, plus why each undefined one is ``None``.

    ``features``: each video's segment features float (K, D) (the VERA protocol's similarity step).
    ``snippet_count``: ``eval.snippet_count`` (:func:`dualvad.eval.snippet_protocol.snippets_of`).
    Returns ``({"video_auc", "frame_auc", "frame_auc_vera", "frame_auc_16", "frame_ap"},
    {metric: reason})``: a video-level metric needs normal and anomalous videos, a frame-level one annotated
    anomalous frames and normal frames.
    """
    metrics: dict[str, float | None] = dict.fromkeys(METRICS)
    undefined: dict[str, str] = {}
    labels = np.array([v.is_anomalous for v in videos], dtype=np.int8)
    if len(set(labels.tolist())) == 2:
        metrics["video_auc"] = video_auc(labels, np.array([v.video_score for v in videos]))
    else:
        undefined["video_auc"] = f"{len(videos)} videos, not both normal and anomalous ones"
    anomalous_frames = sum(frame_ground_truth(v.num_frames, v.gt_intervals).sum() for v in videos)
    if 0 < anomalous_frames < sum(v.num_frames for v in videos):
        per_video = [(v.segment_scores, v.segment_bounds, v.gt_intervals) for v in videos]
        metrics["frame_auc"], metrics["frame_ap"] = frame_auc(per_video), frame_ap(per_video)
        metrics["frame_auc_vera"] = vera_frame_auc(
            [VeraVideo(v.segment_scores, v.segment_bounds, features[v.video_id], v.protocol_frames,
                       v.gt_intervals) for v in videos], vera)
    else:
        reason = f"{anomalous_frames} annotated anomalous frames: frame metrics need both classes"
        undefined.update(dict.fromkeys(("frame_auc", "frame_auc_vera", "frame_ap"), reason))
    try:  # its own frames (16 T per video): both classes may be there when the plain ones are not, or not
        metrics["frame_auc_16"] = snippet_frame_auc(snippet_videos(videos, snippet_count))
    except ValueError as error:
        undefined["frame_auc_16"] = str(error)
    return metrics, undefined


def categories(videos: list[VideoResult]) -> list[str]:
    """The anomaly categories among ``videos``' labels, sorted."""
    return sorted({v.label for v in videos if v.is_anomalous})


def category_metrics(videos: list[VideoResult], features: dict[str, np.ndarray],
                     vera: VeraSettings, snippet_count: str = "ceil") -> dict[str, dict[str, float | None]]:
    """Per anomaly category, :func:`model_metrics` over that category's videos plus all normal videos (the
    per-class protocol of the WSVAD papers); ``None`` where a metric is undefined on that subset."""
    out = {}
    for category in categories(videos):
        out[category], _ = model_metrics(category_videos(videos, category), features, vera, snippet_count)
    return out


def length_mismatches(videos: list[VideoResult]) -> dict[str, tuple[int, int]]:
    """video id -> (decoded frames, annotated frames) for every video whose annotation file states
    another frame count than the decoder found (the VERA protocol then uses the annotated one)."""
    return {v.video_id: (v.num_frames, v.annotated_frames) for v in videos
            if v.annotated_frames is not None and v.annotated_frames != v.num_frames}
