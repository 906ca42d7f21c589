"""The verdict: one video score from the segment scorer and the VLM, fitted on validation videos (pure).

The scorer's video score ``s`` (its highest segment score) and the VLM's ``v`` (its highest clip score / 10)
are combined by a logistic model on their logits::

    p = sigmoid(scorer_weight * logit(s) + vlm_weight * logit(v) + bias)

with every score clipped to ``[EPS, 1 - EPS]`` before its logit. Weights ``(1, 0, 0)`` give ``p = s``
exactly: the scorer alone, the fallback, is the same formula. The rules, all deterministic:

- **Fit.** :func:`fit_verdict` fits scikit-learn's ``LogisticRegression`` (lbfgs, L2 with ``C = 1``: the
  validation set is a few dozen videos at most, and an unpenalised fit on separable scores diverges) once
  on ``logit(s)`` alone and once on ``(logit(s), logit(v))``.
- **Too few videos.** Fewer than :data:`MIN_PER_CLASS` anomalous or normal validation videos: the scorer
  alone at :data:`FALLBACK_THRESHOLD`, the reason recorded. Likewise when the scorer's fitted weight is not
  positive and the VLM is not used (a scorer whose score falls as anomalies rise is not one to rescale).
- **The VLM's weight.** The two-score fit is kept only when both fitted weights are positive *and* the
  combined probability's validation video AUC is strictly above the scorer's own; otherwise the VLM's
  weight is 0 (the scorer-only fit is kept) and ``reason`` says which condition failed.
- **Threshold.** The candidates are the midpoints between consecutive distinct validation probabilities;
  the one with the highest balanced accuracy of ``p >= threshold`` wins, ties going to the lowest (the
  one that misses fewer anomalies). With no candidate (every probability equal) it is
  :data:`FALLBACK_THRESHOLD`.
- **Segments.** A segment's score is the same formula with the segment's scorer score in place of ``s``
  and the video's ``v``: with a positive scorer weight it is monotone in the scorer's segment score, so
  the highest segment score is the video score, as for the scorer alone; the VLM shifts a video's
  segments together (its frame answers are on another scale than its clip score, so they are not mixed
  in per segment).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression

from dualvad.eval.metrics import auc_or_none, auc_text
from dualvad.eval.scoring import SERVING_THRESHOLD

EPS = 1e-4  # scores are clipped to [EPS, 1 - EPS] before their logit: |logit| <= 9.21
MIN_PER_CLASS = 2  # validation videos of each class a fit needs
FALLBACK_THRESHOLD = SERVING_THRESHOLD  # 0.5: the scorer alone is called anomalous at or above this score
FITTED, SCORER_ONLY = "fitted", "scorer-only"  # Verdict.source


@dataclass(frozen=True)
class Verdict:
    """How a video's verdict is made from the two models' scores (the module docstring's rules).

    ``source``: :data:`FITTED` (fitted on validation videos, the VLM's weight possibly 0) or
    :data:`SCORER_ONLY` (no fit: weights ``(1, 0, 0)``, threshold 0.5, ``reason`` says why).
    ``reason``: why the VLM's weight is 0 ("" when the VLM is used). AUCs are validation video AUCs
    (``None``: undefined); the counts are validation videos. The last three fields are what evaluate
    records about where the scores came from.
    """

    source: str
    scorer_weight: float
    vlm_weight: float
    bias: float
    threshold: float  # on the combined probability, in [0, 1]
    vlm_used: bool
    reason: str
    validation_videos: int = 0
    validation_anomalous: int = 0
    auc_scorer: float | None = None
    auc_vlm: float | None = None
    auc_combined: float | None = None
    vlm_row: str = ""  # the evaluate row whose VLM answers were fitted ("" when none)
    validation_ids: tuple[str, ...] = ()
    caveats: tuple[str, ...] = field(default_factory=tuple)  # what makes the fitted figures optimistic

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (tuples as lists)."""
        values = asdict(self)
        return {**values, "validation_ids": list(self.validation_ids), "caveats": list(self.caveats)}

    @staticmethod
    def from_dict(values: dict[str, Any]) -> Verdict:
        """The inverse of :meth:`to_dict`; unknown keys are an error (a file of another version)."""
        return Verdict(**{**values, "validation_ids": tuple(values.get("validation_ids", ())),
                          "caveats": tuple(values.get("caveats", ()))})


def scorer_only(reason: str) -> Verdict:
    """The fallback: the scorer's score as it is, at :data:`FALLBACK_THRESHOLD`."""
    return Verdict(SCORER_ONLY, 1.0, 0.0, 0.0, FALLBACK_THRESHOLD, False, reason)


def logit(scores: np.ndarray | float) -> np.ndarray:
    """float64, same shape: ``log(p / (1 - p))`` of the scores clipped to ``[EPS, 1 - EPS]``."""
    clipped = np.clip(np.asarray(scores, dtype=np.float64), EPS, 1.0 - EPS)
    return np.log(clipped / (1.0 - clipped))


def apply(verdict: Verdict, scorer_scores: np.ndarray | float, vlm_score: np.ndarray | float) -> np.ndarray:
    """float64 probabilities in [0, 1], the shape of ``scorer_scores`` broadcast with ``vlm_score``: video
    scores (one per video) or a video's segment scores (K,) with its one VLM video score."""
    z = (verdict.scorer_weight * logit(scorer_scores) + verdict.vlm_weight * logit(vlm_score)
         + verdict.bias)
    return 1.0 / (1.0 + np.exp(-z))


def choose_threshold(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The threshold rule of the module docstring: probabilities float (N,), labels 0/1 (N,) of both
    classes -> the midpoint with the highest balanced accuracy, the lowest of equals."""
    values = np.unique(np.asarray(probabilities, dtype=np.float64))
    if len(values) < 2:
        return FALLBACK_THRESHOLD
    candidates = (values[:-1] + values[1:]) / 2.0
    accuracies = [balanced_accuracy(labels, probabilities >= t) for t in candidates]
    return float(candidates[int(np.argmax(accuracies))])  # argmax: the first (lowest) of equal maxima


def balanced_accuracy(labels: np.ndarray, decisions: np.ndarray) -> float:
    """Mean of the recall of each class present: labels 0/1 (N,), decisions bool (N,)."""
    labels, decisions = np.asarray(labels).astype(bool), np.asarray(decisions).astype(bool)
    recalls = [float(np.mean(decisions[labels == cls] == cls)) for cls in (True, False)
               if np.any(labels == cls)]
    return float(np.mean(recalls))


def accuracy(labels: np.ndarray, decisions: np.ndarray) -> float:
    """Share of decisions (bool (N,)) equal to 0/1 labels (N,)."""
    return float(np.mean(np.asarray(labels).astype(bool) == np.asarray(decisions).astype(bool)))


def _fit(features: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, float]:
    """(coefficients float64 (F,), intercept) of the L2 logistic regression on features (N, F)."""
    model = LogisticRegression(C=1.0, solver="lbfgs", max_iter=1000).fit(features, labels)
    return model.coef_[0].astype(np.float64), float(model.intercept_[0])


def fit_verdict(scorer_scores: np.ndarray, vlm_scores: np.ndarray, labels: np.ndarray) -> Verdict:
    """The verdict fitted on validation videos: scorer and VLM video scores float (N,) in [0, 1], labels 0/1
    (N,). See the module docstring for every rule; degenerate inputs give :func:`scorer_only`."""
    s, v = np.asarray(scorer_scores, np.float64), np.asarray(vlm_scores, np.float64)
    y = np.asarray(labels).astype(np.int64)
    counts = {"validation_videos": len(y), "validation_anomalous": int(y.sum())}
    aucs = {"auc_scorer": auc_or_none(y, s), "auc_vlm": auc_or_none(y, v)}
    anomalous, normal = int(y.sum()), int(len(y) - y.sum())
    if min(anomalous, normal) < MIN_PER_CLASS:
        reason = (f"validation holds {anomalous} anomalous and {normal} normal videos; a fit needs at least "
                  f"{MIN_PER_CLASS} of each: the scorer alone at threshold {FALLBACK_THRESHOLD:g}")
        return _with(scorer_only(reason), counts, aucs, auc_combined=aucs["auc_scorer"])
    (a1,), c1 = _fit(logit(s)[:, None], y)
    (a2, b2), c2 = _fit(np.stack([logit(s), logit(v)], axis=1), y)
    both = Verdict(FITTED, float(a2), float(b2), c2, 0.0, True, "")
    reason = _vlm_unused(a2, b2, aucs["auc_scorer"], auc_or_none(y, apply(both, s, v)))
    if not reason:
        chosen = both
    elif a1 > 0:
        chosen = Verdict(FITTED, float(a1), 0.0, c1, 0.0, False, reason)
    else:
        reason = (f"the scorer's fitted weight is {a1:.4g} (not positive) on the validation videos, and "
                  f"{reason}: the scorer alone at threshold {FALLBACK_THRESHOLD:g}")
        return _with(scorer_only(reason), counts, aucs, auc_combined=aucs["auc_scorer"])
    probabilities = apply(chosen, s, v)
    return _with(chosen, counts, aucs, auc_combined=auc_or_none(y, probabilities),
                 threshold=choose_threshold(probabilities, y))


def _vlm_unused(scorer_weight: float, vlm_weight: float, auc_scorer: float | None,
                auc_both: float | None) -> str:
    """Why the two-score fit is not kept ("" when it is): both weights must be positive and the combined
    validation AUC strictly above the scorer's."""
    if vlm_weight <= 0 or scorer_weight <= 0:
        return (f"the VLM's fitted weight is {vlm_weight:.4g} (the scorer's {scorer_weight:.4g}): not both "
                "positive")
    if auc_both is None or auc_scorer is None or auc_both <= auc_scorer:
        return (f"the VLM does not raise the validation video AUC (scorer {auc_text(auc_scorer)}, "
                f"combined {auc_text(auc_both)})")
    return ""


def _with(verdict: Verdict, counts: dict[str, int], aucs: dict[str, float | None], **more: Any) -> Verdict:
    return replace(verdict, **counts, **aucs, **more)
