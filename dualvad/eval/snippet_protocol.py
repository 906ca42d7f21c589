"""The field's 16-frame frame-AUC protocol (RTFM, UR-DMU, VadCLIP), beside VERA's and the plain one.

Reference: VadCLIP's ground-truth builder, ``list/make_gt_ucf.py`` in ``nwpu-zxr/VadCLIP`` (commit
``8f554d1``), with its length convention: a video of T snippets (the rows of its feature file) gets
``16 T`` ground-truth frames: a zero vector of ``16 (T + 1)`` frames, ones on every annotated ``[start, end)``
slice, the last 16 frames dropped. Its test scores each snippet once and repeats the score 16 times, and one
ROC is computed over all test videos concatenated. Here:

1. T is the video's snippet count in its feature files (``RUN/segments``' ``snippets``); a video decoded
   from its file has none, and T follows from its frame count N by ``eval.snippet_count``: ``ceil``
   (``ceil(N / 16)``: no snippet without frames) or ``floor_plus_one`` (``floor(N / 16) + 1``: one more
   when N divides by 16). The two differ by 16 frames for each such video, the kind of difference between
   published ground-truth files (UCF-Crime's 1,109,680 frames against 1,109,824).
2. Snippet ``i`` takes the score of the segment that holds frame ``16 i`` (VERA's step 1,
   :func:`dualvad.eval.vera.snippet_segments`); a video ingested one segment per snippet takes its own.
3. The snippet scores repeated 16 times against the ground truth of step 1, all videos concatenated.

The concatenated ground truth reads and writes as the reference repositories' ``.npy`` files (float32, one
value per frame, the videos one after the other): :func:`write_ground_truth`, :func:`read_ground_truth`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import roc_auc_score

from dualvad.eval.metrics import frame_ground_truth, require_both_classes
from dualvad.eval.vera import snippet_count, snippet_segments

SNIPPET = 16  # frames per snippet in every published feature set
REFERENCE = "VadCLIP list/make_gt_ucf.py (nwpu-zxr/VadCLIP 8f554d1): 16 T frames, T snippets per video"


def snippets_of(num_frames: int, snippets: int | None, convention: str = "ceil") -> int:
    """T: the feature files' ``snippets`` where known, else from the frame count by ``convention``
    (``ceil`` or ``floor_plus_one``, see the module docstring)."""
    if snippets is not None:
        return snippets
    return snippet_count(num_frames, SNIPPET) if convention == "ceil" else num_frames // SNIPPET + 1


def snippet_ground_truth(snippets: int, intervals: Sequence[tuple[int, int]]) -> np.ndarray:
    """float32 (16 T,): step 1, the reference's ground truth of one video (1 inside an annotated
    ``[start, end)``, frames past ``16 T`` cut off)."""
    return frame_ground_truth(SNIPPET * snippets, intervals).astype(np.float32)


def snippet_frame_scores(segment_scores: np.ndarray, bounds: np.ndarray, snippets: int) -> np.ndarray:
    """Steps 2-3 for one video: segment scores float (K,), bounds int (K, 2) -> float32 (16 T,)."""
    segment = snippet_segments(bounds, SNIPPET * snippets, SNIPPET)
    return np.repeat(np.asarray(segment_scores, dtype=np.float32)[segment], SNIPPET)


@dataclass(frozen=True)
class SnippetVideo:
    """What the protocol reads of one test video: segment scores float (K,), bounds int (K, 2), its snippet
    count T and annotated ``[start, end)`` frame ranges."""

    segment_scores: np.ndarray
    bounds: np.ndarray
    snippets: int
    gt_intervals: Sequence[tuple[int, int]]


def snippet_curves(videos: Iterable[SnippetVideo]) -> tuple[np.ndarray, np.ndarray]:
    """(ground truth float32 (sum 16 T,), frame scores float32 (same)): every video's, concatenated."""
    videos = list(videos)
    if not videos:
        return np.zeros(0, np.float32), np.zeros(0, np.float32)
    truth = np.concatenate([snippet_ground_truth(v.snippets, v.gt_intervals) for v in videos])
    scores = np.concatenate([snippet_frame_scores(v.segment_scores, v.bounds, v.snippets) for v in videos])
    return truth, scores


def snippet_frame_auc(videos: Iterable[SnippetVideo], truth: np.ndarray | None = None) -> float:
    """One AUC-ROC over the concatenation (scikit-learn); ``truth``: a ground-truth file's values to use
    instead of building them (:func:`read_ground_truth`), of the same length."""
    built, scores = snippet_curves(videos)
    truth = built if truth is None else truth
    if len(truth) != len(scores):
        raise ValueError(f"the ground truth holds {len(truth)} frames, the videos' 16-frame scores "
                         f"{len(scores)}: it was built for other videos, another order or another length "
                         "convention")
    require_both_classes(truth, "16-frame frame-level AUC")
    return float(roc_auc_score(truth, scores))


def write_ground_truth(path: str, truth: np.ndarray) -> None:
    """Save ``truth`` (frames,) as the reference repositories' ground-truth ``.npy`` (float32, 1-D)."""
    np.save(path, np.asarray(truth, dtype=np.float32).reshape(-1))


def read_ground_truth(path: str) -> np.ndarray:
    """A ground-truth ``.npy`` (``gt-ucf.npy``, ``gt_ucf.npy`` ...) as float32 (frames,) of 0 and 1.

    Raises:
        ValueError: not a 1-D array of zeros and ones; the message names the file.
    """
    truth = np.load(path, allow_pickle=False)
    if truth.ndim != 1 or not np.isin(truth, (0, 1)).all():
        raise ValueError(f"{path}: a frame ground truth is a 1-D array of 0 and 1, got shape {truth.shape} "
                         f"with values {np.unique(truth)[:5].tolist()}")
    return truth.astype(np.float32)
