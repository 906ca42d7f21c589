"""The VERA frame-level protocol, step for step (DESIGN.md, Evaluation).

Per video, from its K segment scores to one frame curve:

1. **Similarity-weighted neighbour refinement.** Each segment's score becomes a weighted mean over its
   ``neighbours`` most similar segments of the same video (itself included), by cosine similarity of the
   segment features; weights ``softmax(similarity / temperature)`` over those neighbours.
2. **16-frame snippets.** The video is cut into ``ceil(num_frames / snippet)`` snippets of ``snippet``
   frames; a snippet takes the refined score of the segment that holds its centre frame.
3. **Gaussian smoothing** over the snippet sequence: kernel of ``kernel`` taps (15), ``sigma`` 10 (in
   snippets), weights normalised to sum 1, edges padded by repeating the end values (a constant curve
   stays constant).
4. **Repetition per 16 frames**: each snippet score is repeated over its ``snippet`` frames, the last one
   cut at ``num_frames``.
5. **Centre position weighting**: frame ``t`` of ``L`` is multiplied by
   ``exp(-((t - (L - 1) / 2) / L)^2 / (2 * position_sigma^2))``: 1 at the centre, lower towards the ends
   (``position_sigma`` is relative to the video length; ``inf`` turns the step off).

Then all test videos' curves are concatenated and one ROC is computed (:func:`vera_frame_auc`). Step 1
reads the segment features that ingest stored (the corpus's own per-segment embedding), where VERA used
its encoder's. Steps 3 and 5 are our reading of the protocol's smoothing and position prior; every
constant is a parameter.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import roc_auc_score

from dualvad.checks import above, at_least, require
from dualvad.eval.metrics import frame_ground_truth, require_both_classes


@dataclass(frozen=True)
class VeraSettings:
    """The protocol's constants, the ``eval.vera.*`` config section (defaults: kernel 15, sigma 10, 16-frame
    snippets, as DESIGN.md fixes)."""

    neighbours: int = 5  # segments averaged per segment in step 1 (itself included)
    temperature: float = 0.1  # softmax temperature over cosine similarities
    kernel: int = 15  # Gaussian taps (odd)
    sigma: float = 10.0  # Gaussian sigma, in snippets
    snippet: int = 16  # frames per snippet
    position_sigma: float = 0.5  # relative to the video length; inf = no position weighting

    def __post_init__(self) -> None:
        at_least(self, 1, "neighbours", "snippet", "kernel")
        require(self.kernel % 2 == 1, "kernel", "odd", self.kernel)  # a centred kernel
        above(self, 0, "temperature", "sigma", "position_sigma")


def refine_by_similarity(scores: np.ndarray, features: np.ndarray, neighbours: int,
                         temperature: float) -> np.ndarray:
    """Step 1. scores float (K,), features float (K, D) -> float64 (K,) refined scores.

    Ties in similarity go to the lower segment index (stable sort), so the result is deterministic.
    """
    scores = np.asarray(scores, dtype=np.float64)
    features = np.asarray(features, dtype=np.float64)
    if features.shape[0] != scores.shape[0]:
        raise ValueError(f"{scores.shape[0]} segment scores but {features.shape[0]} segment features")
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    unit = features / np.where(norms > 0, norms, 1.0)
    similarity = unit @ unit.T  # (K, K) cosine
    count = min(neighbours, len(scores))
    nearest = np.argsort(-similarity, axis=1, kind="stable")[:, :count]  # (K, count)
    chosen = np.take_along_axis(similarity, nearest, axis=1) / temperature
    weights = np.exp(chosen - chosen.max(axis=1, keepdims=True))
    weights /= weights.sum(axis=1, keepdims=True)
    return (weights * scores[nearest]).sum(axis=1)


def to_snippets(segment_scores: np.ndarray, bounds: np.ndarray, num_frames: int, snippet: int) -> np.ndarray:
    """Step 2. segment scores (K,), bounds int (K, 2) ``[start, end)`` -> float64 (ceil(L / snippet),)."""
    starts = np.arange(0, num_frames, snippet)
    centres = np.minimum(starts + snippet // 2, num_frames - 1)
    segment = np.searchsorted(np.asarray(bounds)[:, 1], centres, side="right")
    return np.asarray(segment_scores, dtype=np.float64)[segment]


def gaussian_smooth(values: np.ndarray, kernel: int, sigma: float) -> np.ndarray:
    """Step 3. float (n,) -> float64 (n,): normalised Gaussian taps, edge values repeated as padding."""
    half = kernel // 2
    offsets = np.arange(-half, half + 1, dtype=np.float64)
    taps = np.exp(-offsets**2 / (2.0 * sigma**2))
    taps /= taps.sum()
    padded = np.pad(np.asarray(values, dtype=np.float64), half, mode="edge")
    return np.convolve(padded, taps, mode="valid")


def repeat_to_frames(snippet_scores: np.ndarray, snippet: int, num_frames: int) -> np.ndarray:
    """Step 4. float (ceil(L / snippet),) -> float64 (L,): each score over its ``snippet`` frames."""
    return np.repeat(np.asarray(snippet_scores, dtype=np.float64), snippet)[:num_frames]


def position_weights(num_frames: int, position_sigma: float) -> np.ndarray:
    """Step 5. float64 (L,): the centre-position weight of each frame (see the module docstring)."""
    t = np.arange(num_frames, dtype=np.float64)
    relative = (t - (num_frames - 1) / 2.0) / num_frames
    return np.exp(-relative**2 / (2.0 * position_sigma**2))


def vera_frame_scores(segment_scores: np.ndarray, bounds: np.ndarray, features: np.ndarray,
                      num_frames: int, settings: VeraSettings) -> np.ndarray:
    """Steps 1-5 for one video: float64 (num_frames,) frame scores."""
    refined = refine_by_similarity(segment_scores, features, settings.neighbours, settings.temperature)
    snippets = gaussian_smooth(to_snippets(refined, bounds, num_frames, settings.snippet),
                               settings.kernel, settings.sigma)
    frames = repeat_to_frames(snippets, settings.snippet, num_frames)
    return frames * position_weights(num_frames, settings.position_sigma)


@dataclass(frozen=True)
class VeraVideo:
    """What the protocol reads of one test video (shapes as in :func:`vera_frame_scores`)."""

    segment_scores: np.ndarray  # float (K,)
    bounds: np.ndarray  # int (K, 2)
    features: np.ndarray  # float (K, D)
    num_frames: int
    gt_intervals: Sequence[tuple[int, int]]


def vera_frame_auc(videos: Iterable[VeraVideo], settings: VeraSettings) -> float:
    """One AUC-ROC over all videos' VERA frame curves concatenated (scikit-learn)."""
    truths, curves = [], []
    for video in videos:
        curves.append(vera_frame_scores(video.segment_scores, video.bounds, video.features,
                                        video.num_frames, settings))
        truths.append(frame_ground_truth(video.num_frames, video.gt_intervals))
    truth = np.concatenate(truths)
    require_both_classes(truth, "VERA frame-level AUC")
    return float(roc_auc_score(truth, np.concatenate(curves)))
