"""A trained segment scorer: build, one optimisation step, save, load, score (plain PyTorch).

The Ray Train loop (``dualvad/train/scorer.py``) and the scoring stage call these; so do the
benchmark and the tests, without Ray.

Checkpoint directory layout::

    scorer.json   kind, model options, feature dim, categories, normaliser, training metrics
    model.pt      the model's state_dict
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.fs as pafs
import torch
from torch import Tensor, nn

from dualvad.errors import MissingInputError, StageError
from dualvad.rundir import RunDir
from dualvad.scorer.data import FeatureNormalizer
from dualvad.scorer.losses import RefineVADLossWeights, refinevad_loss
from dualvad.scorer.mil import MILRankingScorer, sultani_ranking_loss
from dualvad.scorer.refinevad import RefineVAD, RefineVADConfig, ScorerOutput

SCORER_KINDS = ("refinevad", "mil")
STAGE, MODEL_DIR = "scorer", "model"  # the trained scorer lives in RUN/scorer/model
META_FILE, WEIGHTS_FILE = "scorer.json", "model.pt"
SCORE_BATCH = 512  # videos per forward pass when scoring
# Bumped when a RefineVAD scorer's weights stop meaning the same thing to the code that runs them.
# 2 (2026-11-23): MoTAR adds segment positions and keeps only the encoder's update.
# Checkpoints without the field are architecture 1.
ARCHITECTURE = 2


class StaleScorerError(StageError):
    """A saved scorer was trained for an older architecture than this code runs."""


@dataclass
class ScorerSpec:
    """Everything needed to rebuild a scorer's architecture."""

    kind: str  # "refinevad" or "mil"
    feature_dim: int
    categories: tuple[str, ...]  # categories[0] == "Normal"
    hidden_dim: int = 128
    use_motar: bool = True
    use_core: bool = True
    dropout: float = 0.1
    context_scale_init: float = 0.1
    context_drop: float = 0.8
    # scorer.centre_context; absent from checkpoints written before it existed, which then load centred
    centre_context: bool = True
    architecture: int = ARCHITECTURE  # see ARCHITECTURE


def build_model(spec: ScorerSpec) -> nn.Module:
    """The scorer network for ``spec`` (randomly initialised with torch's current seed)."""
    if spec.kind == "refinevad":
        return RefineVAD(RefineVADConfig(
            feature_dim=spec.feature_dim, hidden_dim=spec.hidden_dim,
            num_categories=len(spec.categories), use_motar=spec.use_motar,
            use_core=spec.use_core, dropout=spec.dropout,
            context_scale_init=spec.context_scale_init, context_drop=spec.context_drop,
            centre_context=spec.centre_context,
        ))
    if spec.kind == "mil":
        return MILRankingScorer(spec.feature_dim)
    raise ValueError(f"unknown scorer kind {spec.kind!r}; choose one of {SCORER_KINDS}")


@dataclass
class LossSettings:
    """How a batch's loss is computed."""

    topk: int = 3  # k of the top-k MIL loss (RefineVAD)
    weights: RefineVADLossWeights = field(default_factory=RefineVADLossWeights)


def batch_loss(kind: str, model: nn.Module, batch: dict[str, Tensor], settings: LossSettings) -> Tensor:
    """The training loss of one batch.

    Args:
        batch: ``features`` (B, K, D) float32, ``label`` (B,) float32, ``category`` (B,) int64,
            ``known`` (B,) bool.
    """
    return output_loss(kind, model(batch["features"]), batch, settings)


def output_loss(kind: str, output: ScorerOutput, batch: dict[str, Tensor], settings: LossSettings) -> Tensor:
    """The loss of a batch the model has already run on (``output``); ``batch`` as in :func:`batch_loss`."""
    labels = batch["label"].float()
    if kind == "mil":
        return _mil_pairs_loss(output.segment_scores, labels)
    total, _ = refinevad_loss(output, labels, batch["category"].long(), batch["known"].bool(),
                              settings.weights, k=settings.topk)
    return total


def _mil_pairs_loss(scores: Tensor, labels: Tensor) -> Tensor:
    """Sultani's ranking loss over every (anomalous, normal) pair of the batch.

    A batch with only one kind of video carries no ranking signal: its loss is zero (with a
    graph, so that distributed workers still all-reduce the same parameters).
    """
    abnormal, normal = scores[labels > 0.5], scores[labels <= 0.5]
    if len(abnormal) == 0 or len(normal) == 0:
        return scores.sum() * 0.0
    a = abnormal.repeat_interleave(len(normal), dim=0)
    n = normal.repeat(len(abnormal), 1)
    return sultani_ranking_loss(a, n)


@dataclass
class TrainedScorer:
    """A scorer ready to score: network in eval mode plus its input normaliser."""

    spec: ScorerSpec
    normalizer: FeatureNormalizer
    model: nn.Module
    metrics: dict[str, float] = field(default_factory=dict)

    def score(self, features: np.ndarray) -> np.ndarray:
        """features: float32 (N, K, D) raw segment features -> float32 (N, K) scores in [0, 1]."""
        if features.ndim != 3 or features.shape[-1] != self.spec.feature_dim:
            raise ValueError(f"features must be (N, K, {self.spec.feature_dim}), got {features.shape}; "
                             "was the scorer trained on features from another extractor?")
        self.model.eval()
        normalized = torch.from_numpy(self.normalizer(features))
        with torch.inference_mode():
            scores = [self.model(chunk).segment_scores for chunk in normalized.split(SCORE_BATCH)]
        return torch.cat(scores).numpy().astype(np.float32) if scores else np.zeros(features.shape[:2],
                                                                                     np.float32)

    def save(self, directory: str | Path) -> None:
        """Write ``scorer.json`` and ``model.pt`` into ``directory`` (created if missing)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {"spec": asdict(self.spec), "metrics": self.metrics,
                "normalizer": {"mean": self.normalizer.mean.tolist(), "std": self.normalizer.std.tolist()}}
        (directory / META_FILE).write_text(json.dumps(meta, indent=2))
        torch.save(self.model.state_dict(), directory / WEIGHTS_FILE)

    @staticmethod
    def load(directory: str | Path) -> TrainedScorer:
        """Rebuild a scorer saved by :meth:`save`."""
        directory = Path(directory)
        if not (directory / META_FILE).is_file():
            raise FileNotFoundError(f"{directory} holds no trained scorer ({META_FILE} missing); "
                                    "run `dualvad train-scorer` first")
        meta: dict[str, Any] = json.loads((directory / META_FILE).read_text())
        spec_fields = dict(meta["spec"], categories=tuple(meta["spec"]["categories"]))
        stored = spec_fields.pop("architecture", 1)
        # the MIL baseline has not changed: its old checkpoints still score the same
        if spec_fields["kind"] == "refinevad" and stored != ARCHITECTURE:
            raise StaleScorerError(
                f"the scorer in {directory} was trained for scorer architecture {stored}, this "
                f"dualvad runs {ARCHITECTURE}: its weights would score differently; re-run "
                "`dualvad train-scorer` (then `dualvad score`)")
        spec = ScorerSpec(**spec_fields)
        model = build_model(spec)
        model.load_state_dict(torch.load(directory / WEIGHTS_FILE, weights_only=True))
        model.eval()
        normalizer = FeatureNormalizer(np.asarray(meta["normalizer"]["mean"], np.float32),
                                       np.asarray(meta["normalizer"]["std"], np.float32))
        return TrainedScorer(spec, normalizer, model, meta.get("metrics", {}))


def load_from_run(run: RunDir, local_dir: str) -> TrainedScorer:
    """Fetch RUN/scorer/model (any filesystem) into ``local_dir`` and load it."""
    if not run.exists(STAGE, MODEL_DIR):
        raise MissingInputError(f"{run.path(STAGE, MODEL_DIR)} holds no trained scorer: "
                                "run `dualvad train-scorer` first")
    pafs.copy_files(run.path(STAGE, MODEL_DIR), local_dir, source_filesystem=run.fs,
                    destination_filesystem=pafs.LocalFileSystem())
    return TrainedScorer.load(local_dir)
