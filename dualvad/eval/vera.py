"""The VERA frame-level protocol, step for step as VERA's public evaluation script does it.

The reference is ``compute_auc.py`` of ``vera-framework/VERA`` (read at its commit ``fd17c0f``); this
module re-implements its procedure, quirks included, because a "Frame AUC (VERA)" figure is only
comparable to the papers' when it is that procedure. Per video of ``L`` frames:

1. **16-frame snippets.** Snippet ``i`` starts at frame ``16 i`` (``n = ceil(L / 16)`` snippets, the last
   one runs to the video's end). Where scores and features are per segment, snippet ``i`` takes the score
   and the feature of the segment that holds frame ``16 i`` (:func:`snippet_segments`).
2. **Similarity-weighted refinement.** Cosine similarity between the snippets' features; each snippet
   takes its ``int(0.15 n)`` most similar snippets (itself among them; *all* ``n`` when that is 0, as the
   reference's ``[:, -0:]`` slice does), weighted by ``softmax(similarity x 10)`` over them
   (:func:`refine_by_similarity`).
3. **Gaussian smoothing** of the refined snippet scores: the reference's 15-tap kernel, sigma 10, taps at
   ``linspace(-15 // 2, 15 // 2, 15)`` = -8 .. 7 (not centred), normalised to sum 1, applied by NumPy's
   zero-padded ``'same'`` convolution, which for a video of fewer snippets than taps shifts the window
   (:func:`gaussian_smooth`).
4. **Rounding** of the smoothed snippet scores to one decimal, NumPy's way (:func:`round_scores`).
5. **Repetition per 16 frames**: each snippet score over its 16 frames, the last one to frame ``L``.
6. **Position weighting**: frame ``t`` is multiplied by ``exp(-0.5 ((t - c) / c)^2)``, ``c = floor(L / 2)``
   (:func:`position_weights`): the reference applies this after everything else, so every video's first
   and last frames score ``exp(-0.5) = 0.61`` times what its centre would.

Then the ground truth (half-open ``[start, end)`` annotations clipped to ``L``) and the curves of all test
videos are concatenated and one ROC is computed (:func:`vera_frame_auc`).

Where a description of the protocol and the reference could be read differently, the reference
decides: the short-video convolution (step 3), NumPy's rounding (step 4), and ``L`` being the
annotation's ``length`` (the reference builds the frame curve and the ground truth from it, not from a
decoded frame count). The reference leaves two inputs undefined and we define them: a zero feature
vector (the reference divides by its norm, giving NaN) has similarity 0 to every snippet, and a video of
one frame (``c = 0``, 0/0) gets position weight 1. Ties in similarity keep the higher snippet index
(a stable ascending sort, then the last ``k``; NumPy sorts such short rows stably too).

Step 2 reads the segment features that ingest stored (the corpus's own per-segment embedding), where
VERA used its vision encoder's per-snippet features.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import roc_auc_score

from dualvad.eval.config import VeraSettings
from dualvad.eval.metrics import frame_ground_truth, require_both_classes


def snippet_count(num_frames: int, snippet: int) -> int:
    """``ceil(num_frames / snippet)``: the snippets start at ``0, snippet, 2 snippet ... < num_frames``."""
    return -(-num_frames // snippet)


def snippet_segments(bounds: np.ndarray, num_frames: int, snippet: int) -> np.ndarray:
    """Step 1. bounds int (K, 2) ``[start, end)`` -> int64 (ceil(L / snippet),): the segment holding each
    snippet's first frame ``snippet x i``.

    ``num_frames`` is the protocol's ``L``; a snippet starting after the last segment (an annotation whose
    ``length`` exceeds the decoded frame count) takes the last segment.
    """
    starts = np.arange(snippet_count(num_frames, snippet), dtype=np.int64) * snippet
    segment = np.searchsorted(np.asarray(bounds)[:, 1], starts, side="right")
    return np.minimum(segment, len(bounds) - 1)


def cosine_similarity(features: np.ndarray) -> np.ndarray:
    """float (n, D) -> float64 (n, n); a zero row has similarity 0 to every row (itself included)."""
    features = np.asarray(features, dtype=np.float64)
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    unit = features / np.where(norms > 0, norms, 1.0)
    return unit @ unit.T


def neighbour_count(snippets: int, share: float) -> int:
    """``int(share x snippets)``, or every snippet when that is 0 (the reference's ``[:, -0:]``)."""
    count = int(share * snippets)
    return count if count > 0 else snippets


def refine_by_similarity(scores: np.ndarray, features: np.ndarray, share: float, scale: float) -> np.ndarray:
    """Step 2. scores float (n,), features float (n, D) per snippet -> float64 (n,) refined scores."""
    scores = np.asarray(scores, dtype=np.float64)
    if len(features) != len(scores):
        raise ValueError(f"{len(scores)} snippet scores but {len(features)} snippet features")
    similarity = cosine_similarity(features)
    count = neighbour_count(len(scores), share)
    nearest = np.argsort(similarity, axis=1, kind="stable")[:, -count:]  # (n, count), most similar last
    logits = np.take_along_axis(similarity, nearest, axis=1) * scale
    weights = np.exp(logits - logits.max(axis=1, keepdims=True))
    weights /= weights.sum(axis=1, keepdims=True)
    return (weights * scores[nearest]).sum(axis=1)


def gaussian_taps(size: int, sigma: float) -> np.ndarray:
    """float64 (size,): ``exp(-x^2 / (2 sigma^2))`` at ``x = linspace(-size // 2, size // 2, size)``, sum 1.

    ``-size // 2`` is Python's floor division of ``-size``: for 15 taps the positions run from -8 to 7 in
    steps of 15/14, so the kernel is not centred (the reference's expression, kept as written).
    """
    positions = np.linspace((-size) // 2, size // 2, size)
    taps = np.exp(-positions**2 / (2.0 * sigma**2))
    return taps / taps.sum()


def gaussian_smooth(values: np.ndarray, kernel: int, sigma: float) -> np.ndarray:
    """Step 3. float (n,) -> float64 (n,): NumPy's zero-padded ``'same'`` convolution with
    :func:`gaussian_taps`, as the reference applies it.

    ``'same'`` returns ``max(n, kernel)`` values of the full convolution (length ``n + kernel - 1``)
    starting at index ``(min(n, kernel) - 1) // 2``, and the reference reads the first ``n``. For
    ``n >= kernel`` that is the usual window, snippet ``i`` at full index ``i + (kernel - 1) // 2``. For a
    video shorter than the kernel (``n < 15`` snippets, under 225 frames) the window starts at
    ``(n - 1) // 2`` instead, so each snippet is smoothed around a point ``(kernel - 1) // 2 - (n - 1) // 2``
    snippets before it (for ``n = 1``: its own score times the first tap, about 0.056). Edges are padded
    with zeros, so the ends of every video are pulled down.
    """
    values = np.asarray(values, dtype=np.float64)
    full = np.convolve(values, gaussian_taps(kernel, sigma))  # (n + kernel - 1,)
    offset = (min(len(values), kernel) - 1) // 2
    return full[offset : offset + len(values)]


def round_scores(values: np.ndarray, decimals: int) -> np.ndarray:
    """Step 4. float (n,) -> float64 (n,) rounded as ``round()`` rounds a NumPy float64 (the reference's
    values are NumPy scalars): ``rint(x * 10^d) / 10^d``, halves to even after scaling, so 0.35 becomes 0.4
    (Python's float ``round`` gives 0.3)."""
    return np.round(np.asarray(values, dtype=np.float64), decimals)


def repeat_to_frames(snippet_scores: np.ndarray, snippet: int, num_frames: int) -> np.ndarray:
    """Step 5. float (ceil(L / snippet),) -> float64 (L,): each score over its ``snippet`` frames, the last
    one up to frame ``L``."""
    return np.repeat(np.asarray(snippet_scores, dtype=np.float64), snippet)[:num_frames]


def position_weights(num_frames: int) -> np.ndarray:
    """Step 6. float64 (L,): ``exp(-0.5 ((t - c) / c)^2)`` with ``c = floor(L / 2)``; 1 for ``L = 1``."""
    centre = num_frames // 2
    if centre == 0:
        return np.ones(num_frames)
    t = np.arange(num_frames, dtype=np.float64)
    return np.exp(-0.5 * ((t - centre) / centre) ** 2)


def vera_frame_scores(segment_scores: np.ndarray, bounds: np.ndarray, features: np.ndarray,
                      num_frames: int, settings: VeraSettings) -> np.ndarray:
    """Steps 1-6 for one video: segment scores float (K,), bounds int (K, 2), features float (K, D) ->
    float64 (num_frames,) frame scores, ``num_frames`` being the protocol's ``L``."""
    segment = snippet_segments(bounds, num_frames, settings.snippet)
    refined = refine_by_similarity(np.asarray(segment_scores)[segment], np.asarray(features)[segment],
                                   settings.neighbour_share, settings.similarity_scale)
    snippets = round_scores(gaussian_smooth(refined, settings.kernel, settings.sigma), settings.decimals)
    return repeat_to_frames(snippets, settings.snippet, num_frames) * position_weights(num_frames)


@dataclass(frozen=True)
class VeraVideo:
    """What the protocol reads of one test video (shapes as in :func:`vera_frame_scores`); ``num_frames``
    is ``L``: the annotation's ``length`` where it gives one, else the decoded frame count."""

    segment_scores: np.ndarray  # float (K,)
    bounds: np.ndarray  # int (K, 2)
    features: np.ndarray  # float (K, D)
    num_frames: int
    gt_intervals: Sequence[tuple[int, int]]


def vera_frame_auc(videos: Iterable[VeraVideo], settings: VeraSettings) -> float:
    """One AUC-ROC over all videos' VERA frame curves and ground truth concatenated (scikit-learn)."""
    truths, curves = [], []
    for video in videos:
        curves.append(vera_frame_scores(video.segment_scores, video.bounds, video.features,
                                        video.num_frames, settings))
        truths.append(frame_ground_truth(video.num_frames, video.gt_intervals))
    truth = np.concatenate(truths)
    require_both_classes(truth, "VERA frame-level AUC")
    return float(roc_auc_score(truth, np.concatenate(curves)))
