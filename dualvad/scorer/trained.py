"""A trained segment scorer: build, one optimisation step, save, load, score (plain PyTorch).

The Ray Train loop (``dualvad/train/train_scorer.py``) and the scoring stage call these; so do the
benchmark and the tests, without Ray.

Checkpoint directory layout::

    scorer.json   architecture, the whole ScorerConfig, feature dim, categories, normaliser, metrics
    model.pt      the model's state_dict
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from dualvad import paths
from dualvad.errors import ConfigError, MissingInputError, StageError
from dualvad.rundir import RunDir, local_folder
from dualvad.scorer.config import ScorerConfig
from dualvad.scorer.data import FeatureNormalizer
from dualvad.scorer.ensemble import EnsembleOutput, ScorerEnsemble
from dualvad.scorer.losses import refinevad_loss
from dualvad.scorer.mil import MILRankingScorer, sultani_ranking_loss
from dualvad.scorer.refinevad import RefineVAD, ScorerOutput

META_FILE, WEIGHTS_FILE = "scorer.json", "model.pt"
SCORE_BATCH = 512  # videos per forward pass when scoring
# Bumped when a RefineVAD scorer's weights stop meaning the same thing to the code that runs them
# (history: docs/decisions.md). Checkpoints without the field are architecture 1.
ARCHITECTURE = 2
# What a scorer saved before a key existed was: a stored config without the key reads this value
SETTINGS_BEFORE: dict[str, Any] = {"ensemble": 1}


class StaleScorerError(StageError):
    """A saved scorer was trained for an older architecture or checkpoint format than this code runs."""


def build_model(config: ScorerConfig, feature_dim: int, num_categories: int) -> nn.Module:
    """The scorer network of ``config.kind`` for D = ``feature_dim`` inputs and C = ``num_categories``
    (randomly initialised with torch's current seed), or a :class:`ScorerEnsemble` of ``config.ensemble``
    of them."""
    if config.ensemble > 1:
        return ScorerEnsemble(lambda: _network(config, feature_dim, num_categories), config.ensemble)
    return _network(config, feature_dim, num_categories)


def _network(config: ScorerConfig, feature_dim: int, num_categories: int) -> nn.Module:
    if config.kind == "refinevad":
        return RefineVAD(config, feature_dim, num_categories)
    return MILRankingScorer(feature_dim)  # the config allows no other kind


def batch_loss(config: ScorerConfig, model: nn.Module, batch: dict[str, Tensor],
               column_groups: Tensor | None = None) -> Tensor:
    """The training loss of one batch (nats, scalar): an ensemble's is its members' mean, each member on
    its own draw of dropped cue groups (``column_groups``, see :func:`drop_column_groups`; None: no groups).

    Args:
        batch: ``features`` (B, K, D) float32 (normalised), ``label`` (B,) float32, ``category`` (B,) int64,
            ``known`` (B,) bool.
    """
    features, members = batch["features"], config.ensemble
    if column_groups is not None:
        draws = [drop_column_groups(features, column_groups, config.group_drop) for _ in range(members)]
        features = torch.stack(draws) if members > 1 else draws[0]
    output = model(features)
    outputs = output.members if isinstance(output, EnsembleOutput) else [output]
    return torch.stack([output_loss(config, member, batch) for member in outputs]).mean()


def train_epoch(config: ScorerConfig, model: nn.Module, optimizer: torch.optim.Optimizer,
                batches: Iterable[dict[str, Tensor]], column_groups: Tensor | None) -> list[float]:
    """One epoch of training steps over ``batches`` (as :func:`batch_loss` takes them); returns each step's
    loss. Randomness (dropout, dropped groups) comes from torch's global generator: seed it per epoch."""
    model.train()
    losses = []
    for batch in batches:
        loss = batch_loss(config, model, batch, column_groups)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses


def drop_column_groups(features: Tensor, groups: Tensor, share: float) -> Tensor:
    """Training inputs with whole column groups set to 0 (the training mean, after the normaliser): each
    video's group is dropped with probability ``share`` (torch's global generator, seeded per epoch), the
    same for all its segments.

    Args:
        features: (B, K, D) float32, normalised.
        groups: (D,) int64, each column's group index in ``[0, G)``.
    Returns: (B, K, D) float32; ``features`` itself when ``share`` is 0.
    """
    if share == 0.0:
        return features
    count = int(groups.max()) + 1
    keep = torch.rand(features.shape[0], 1, count) >= share  # (B, 1, G)
    return features * keep[..., groups].to(features.dtype)


def output_loss(config: ScorerConfig, output: ScorerOutput, batch: dict[str, Tensor]) -> Tensor:
    """The loss of a batch the model has already run on (``output``); ``batch`` as in :func:`batch_loss`."""
    labels = batch["label"].float()
    if config.kind == "mil":
        return _mil_pairs_loss(output.segment_scores, labels)
    total, _ = refinevad_loss(output, labels, batch["category"].long(), batch["known"].bool(), config)
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
    """A scorer ready to score: network in eval mode plus its input normaliser.

    ``config`` is the scorer config it was trained with; ``feature_dim`` (D) and ``categories``
    (``categories[0] == "Normal"``) come from the training data.
    """

    config: ScorerConfig
    feature_dim: int
    categories: tuple[str, ...]
    normalizer: FeatureNormalizer
    model: nn.Module
    metrics: dict[str, float] = field(default_factory=dict)

    def score(self, features: np.ndarray) -> np.ndarray:
        """features: float32 (N, K, D) raw segment features -> float32 (N, K) scores in [0, 1]."""
        return self.predict(features)[0]

    def predict(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """features: float32 (N, K, D) raw segment features -> (float32 (N, K) segment scores in [0, 1],
        float32 (N, C) video-level category probabilities over :attr:`categories`, softmax of the category
        head, or ``None`` for a scorer without one: the MIL baseline)."""
        if features.ndim != 3 or features.shape[-1] != self.feature_dim:
            raise ValueError(f"features must be (N, K, {self.feature_dim}), got {features.shape}; "
                             "was the scorer trained on features from another extractor?")
        self.model.eval()
        normalized = torch.from_numpy(self.normalizer(features))
        with torch.inference_mode():
            outputs = [self.model(chunk) for chunk in normalized.split(SCORE_BATCH)]
        if not outputs:
            return np.zeros(features.shape[:2], np.float32), None
        scores = torch.cat([output.segment_scores for output in outputs]).numpy().astype(np.float32)
        if outputs[0].category_logits is None:
            return scores, None
        logits = torch.cat([output.category_logits for output in outputs])
        return scores, torch.softmax(logits.float(), dim=-1).numpy().astype(np.float32)

    def save(self, directory: str | Path) -> None:
        """Write ``scorer.json`` and ``model.pt`` into ``directory`` (created if missing)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {"architecture": ARCHITECTURE, "config": asdict(self.config), "feature_dim": self.feature_dim,
                "categories": list(self.categories), "metrics": self.metrics,
                "normalizer": {"mean": self.normalizer.mean.tolist(), "std": self.normalizer.std.tolist()}}
        (directory / META_FILE).write_text(json.dumps(meta, indent=2))
        torch.save(self.model.state_dict(), directory / WEIGHTS_FILE)

    @staticmethod
    def load(directory: str | Path) -> TrainedScorer:
        """Rebuild a scorer saved by :meth:`save` from its stored config (never from today's defaults).

        Raises:
            StaleScorerError: the checkpoint predates this architecture or stores no complete config.
        """
        directory = Path(directory)
        if not (directory / META_FILE).is_file():
            raise FileNotFoundError(f"{directory} holds no trained scorer ({META_FILE} missing); "
                                    "run `dualvad train-scorer` first")
        meta: dict[str, Any] = json.loads((directory / META_FILE).read_text())
        config = _stored_config(meta, directory)
        categories = tuple(meta["categories"])
        model = build_model(config, int(meta["feature_dim"]), len(categories))
        model.load_state_dict(torch.load(directory / WEIGHTS_FILE, weights_only=True))
        model.eval()
        normalizer = FeatureNormalizer(np.asarray(meta["normalizer"]["mean"], np.float32),
                                       np.asarray(meta["normalizer"]["std"], np.float32))
        return TrainedScorer(config, int(meta["feature_dim"]), categories, normalizer, model,
                             meta.get("metrics", {}))


_RETRAIN = "re-run `dualvad train-scorer` (then `dualvad score`)"


def _stored_config(meta: dict[str, Any], directory: Path) -> ScorerConfig:
    """The :class:`ScorerConfig` in ``scorer.json``: every field as stored (a key the scorer predates reads
    its :data:`SETTINGS_BEFORE` value, what it was trained with), none filled from today's defaults."""
    stored = meta.get("config")
    if not isinstance(stored, dict):  # the format before checkpoints stored their config
        raise StaleScorerError(f"the scorer in {directory} was saved without its scorer config (an older "
                               f"dualvad); {_RETRAIN}")
    architecture = meta.get("architecture", 1)
    # the MIL baseline has not changed: its checkpoints of any architecture still score the same
    if stored.get("kind") == "refinevad" and architecture != ARCHITECTURE:
        raise StaleScorerError(
            f"the scorer in {directory} was trained for scorer architecture {architecture}, this "
            f"dualvad runs {ARCHITECTURE}: its weights would score differently; {_RETRAIN}")
    stored = {**SETTINGS_BEFORE, **stored}
    names = {f.name for f in fields(ScorerConfig)}
    missing, unknown = sorted(names - set(stored)), sorted(set(stored) - names)
    if missing or unknown:
        raise StaleScorerError(f"the scorer config in {directory / META_FILE} lacks {missing} and has "
                               f"unknown {unknown} (another dualvad version); {_RETRAIN}")
    try:
        return ScorerConfig(**stored)
    except ConfigError as error:
        raise StaleScorerError(f"{directory / META_FILE}: {error}; {_RETRAIN}") from error


def load_from_run(run: RunDir, local_dir: str) -> TrainedScorer:
    """Load RUN/scorer/model: in place on a local disk, else fetched into ``local_dir`` first (any
    filesystem; the caller deletes ``local_dir``)."""
    if not run.exists(paths.SCORER, paths.SCORER_MODEL_DIR):
        raise MissingInputError(f"{run.path(paths.SCORER, paths.SCORER_MODEL_DIR)} holds no trained scorer: "
                                "run `dualvad train-scorer` first")
    return TrainedScorer.load(local_folder(run.fs, run.path(paths.SCORER, paths.SCORER_MODEL_DIR), local_dir))
