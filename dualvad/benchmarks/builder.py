"""Turning one video's selected frames into benchmark rows (pure: no Ray, no I/O but decoding).

Frame labels come from the temporal annotation where the video has one; a normal video is
normal everywhere; an anomalous video without annotation gets scorer pseudo-labels (its
frames whose segment score reaches a threshold), and its rows say ``pseudo=True``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dualvad import schema as S
from dualvad.benchmarks import templates as T
from dualvad.corpus.layout import NORMAL_LABEL
from dualvad.video.gop import GopReader, frame_size


@dataclass(frozen=True)
class SampledVideo:
    """One row of RUN/samples, as the benchmark builder needs it."""

    video_id: str
    path: str
    label: str
    split: str
    fps: float
    frames: tuple[int, ...]  # selected frame indices, sorted
    frame_scores: tuple[float, ...]  # segment score of each selected frame
    gt_intervals: tuple[int, ...] | None  # flattened [s1, e1, ...]; None = not annotated

    @staticmethod
    def from_row(row: dict) -> SampledVideo:
        intervals = row[S.GT_INTERVALS]
        return SampledVideo(row[S.VIDEO_ID], row[S.VIDEO_PATH], row[S.LABEL], row[S.SPLIT], row[S.FPS],
                            tuple(row[S.FRAMES]), tuple(row[S.FRAME_SCORES]),
                            None if intervals is None else tuple(intervals))


def frame_labels(video: SampledVideo, pseudo_threshold: float) -> tuple[np.ndarray, bool]:
    """(bool (N,) anomalous flag of each selected frame, whether they are pseudo-labels)."""
    frames = np.asarray(video.frames)
    if video.gt_intervals is not None:
        bounds = np.asarray(video.gt_intervals).reshape(-1, 2)
        inside = (frames[:, None] >= bounds[:, 0]) & (frames[:, None] < bounds[:, 1])
        return inside.any(axis=1), False
    if video.label == NORMAL_LABEL:
        return np.zeros(len(frames), dtype=bool), False
    return np.asarray(video.frame_scores) >= pseudo_threshold, True


def decode_selected(video: SampledVideo, longest: int, decode_threads: int = 1) -> np.ndarray:
    """The selected frames, decoded at the benchmark size (:func:`read_at`): uint8 (N, H, W, 3)."""
    return decode_frames(video.path, np.asarray(video.frames), longest, decode_threads)


def decode_frames(path: str, frames: np.ndarray, longest: int, decode_threads: int = 1) -> np.ndarray:
    """Frames ``frames`` (int (N,), sorted) of the video at ``path`` so that the longer side is ``longest`` px
    (:func:`frame_size`): uint8 (N, H, W, 3), RGB (:func:`read_at`).

    Raises:
        VideoDecodeError: the file cannot be opened or a frame cannot be decoded.
    """
    # no pixel cap: these videos passed ingest's (ingest.max_pixels), whatever the run set it to
    with GopReader(path, decode_threads, max_pixels=None) as reader:
        return read_at(reader, np.asarray(frames), longest)


def read_at(reader: GopReader, frames: np.ndarray, longest: int) -> np.ndarray:
    """Frames ``frames`` of an open reader resized so that the longer side is ``longest`` px: uint8 (N, H, W,
    3). The one resize the benchmarks, evaluate and the detector all use, so they see the same pixels."""
    width, height = frame_size(reader.width, reader.height, longest)
    return reader.read(np.asarray(frames), width, height)


def image_rows(video: SampledVideo, jpegs: list[bytes], labels: np.ndarray, pseudo: bool,
               seed: int) -> list[dict]:
    """One image-benchmark row per selected frame."""
    rows = []
    for position, frame in enumerate(video.frames):
        anomalous = bool(labels[position])
        category = video.label if anomalous and video.label != NORMAL_LABEL else None
        rng = T.row_rng(seed, f"image:{video.video_id}:{frame}")
        rows.append({
            S.ROW_ID: f"{video.video_id}#{frame}", S.VIDEO_ID: video.video_id, "frame_index": frame,
            "time_s": frame / video.fps, S.SPLIT: video.split, S.VIDEO_LABEL: video.label,
            "image": jpegs[position], "anomalous": anomalous, S.CATEGORY: category, S.PSEUDO: pseudo,
            S.SCORE: video.frame_scores[position],
            S.CONVERSATIONS: T.image_conversation(rng, anomalous, category),
        })
    return rows


def clip_windows(count: int, clip_frames: int) -> list[range]:
    """Consecutive windows of ``clip_frames`` selected frames (a shorter selection: one window).

    Focused allocation puts many selected frames close together where the scorer sees an
    anomaly, so the windows there are short, dense clips around it; the others span the
    rest of the video (normal clips, or anomalies the scorer missed).
    """
    if count <= clip_frames:
        return [range(count)]
    return [range(start, start + clip_frames) for start in range(0, count - clip_frames + 1, clip_frames)]


def video_rows(video: SampledVideo, jpegs: list[bytes], labels: np.ndarray, pseudo: bool,
               clip_frames: int, seed: int) -> list[dict]:
    """One video-benchmark row per clip window."""
    rows = []
    for window in clip_windows(len(video.frames), clip_frames):
        indices = [video.frames[i] for i in window]
        abnormal = [bool(labels[i]) for i in window]
        rng = T.row_rng(seed, f"video:{video.video_id}:{indices[0]}")
        rows.append({
            S.ROW_ID: f"{video.video_id}#{indices[0]}-{indices[-1]}", S.VIDEO_ID: video.video_id,
            "frame_indices": indices, "images": [jpegs[i] for i in window],
            "start_s": indices[0] / video.fps, "end_s": (indices[-1] + 1) / video.fps,
            S.SPLIT: video.split, S.VIDEO_LABEL: video.label, "abnormal": abnormal,
            "abnormality_score": T.abnormality_score(abnormal),
            S.CATEGORY: video.label if any(abnormal) and video.label != NORMAL_LABEL else None,
            S.PSEUDO: pseudo, S.CONVERSATIONS: T.video_conversation(rng, abnormal),
        })
    return rows
