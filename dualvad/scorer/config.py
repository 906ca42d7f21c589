"""The segment scorer's settings (``scorer.*``): the model, its loss and its training, defined once.

The model is :class:`dualvad.scorer.refinevad.RefineVAD` (``kind: refinevad``) or the MIL ranking baseline
(``kind: mil``); its loss is :func:`dualvad.scorer.losses.refinevad_loss`; the Ray Train loop in
``dualvad.train.train_scorer`` trains it. A trained scorer's checkpoint stores this config whole
(``dualvad.scorer.trained``) and is rebuilt from it. The feature dimension and the categories come from
the data, not from here. Reasons and measurements behind the defaults: ``docs/decisions.md``.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Literal

from dualvad.checks import above, at_least, below, check_choices, require
from dualvad.tracking import Tracking

ScorerKind = Literal["refinevad", "mil"]  # "mil": Sultani et al. 2018, the baseline
SCORER_KINDS: tuple[str, ...] = typing.get_args(ScorerKind)


@dataclass
class ScoreConfig:
    """The scoring stage (``score.*``), apart from the scorer it runs.

    scorer_run: a run directory (path or URI) whose trained scorer (``OTHER_RUN/scorer``) ``dualvad score``
        uses instead of this run's own: a corpus of unlabelled videos scored with a scorer trained on a
        labelled one. ``""``: this run's ``RUN/scorer``. Kept apart from :class:`ScorerConfig`, which a
        checkpoint stores whole: where a scorer is used does not change the scorer.
    """

    scorer_run: str = ""


@dataclass
class ScorerConfig:
    """The weakly supervised segment scorer and its training.

    Model (RefineVAD only; the MIL baseline has a fixed architecture):
        hidden_dim: H, width of the refined features (divisible by ``transformer_heads``).
        use_motar: False replaces MoTAR by its input projection alone (ablation).
        use_core: False skips CORE; category logits then come from a linear head on the pooled
            features so the category loss still applies (ablation).
        shift_fold_div: TSM folding factor; at most ``H // shift_fold_div`` channels shift each way.
        transformer_layers, transformer_heads: the MoTAR encoder (heads also in CORE's cross-attention).
        dropout: dropout probability inside the encoder, CORE and the score head, in [0, 1).
        context_scale_init: initial value of the learnable per-channel gates (LayerScale) on the MoTAR
            encoder's update and the CORE context (not in the paper).
        context_drop: training-only probability, per video, of dropping those two context branches
            (stochastic depth; not in the paper), in [0, 1).
        centre_context: subtract from each context branch its mean over the video's segments (not in
            the paper). ``context_scale_init=1.0, context_drop=0.0, centre_context=False`` give the
            paper's plain model.

    Loss (:func:`dualvad.scorer.losses.refinevad_loss`; the MIL weight is 1):
        topk: k of the top-k MIL loss. category_weight, smoothness_weight, sparsity_weight: the other
        parts' weights (smoothness and sparsity after RTFM's 8e-4 and 8e-3).

    Training (Ray Train): epochs, batch_size (videos per step per worker), lr, weight_decay (AdamW),
    val_share (share of training videos held out to pick the best checkpoint by validation loss),
    report_every (epochs between reports + checkpoints), seed, workers, cpus_per_worker; score_workers is
    the scoring stage's actor pool (None = up to one per CPU). tracking: ``"tensorboard"`` also writes
    every report's metrics as TensorBoard events to ``RUN/scorer/tensorboard`` (:mod:`dualvad.tracking`).
    """

    kind: ScorerKind = "refinevad"
    hidden_dim: int = 128
    use_motar: bool = True
    use_core: bool = True
    shift_fold_div: int = 8
    transformer_layers: int = 1
    transformer_heads: int = 4
    dropout: float = 0.1
    context_scale_init: float = 0.1
    context_drop: float = 0.8
    centre_context: bool = True
    epochs: int = 40
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-4
    topk: int = 3
    category_weight: float = 0.5
    smoothness_weight: float = 8e-4
    sparsity_weight: float = 8e-3
    val_share: float = 0.2
    report_every: int = 5
    seed: int = 0
    workers: int = 1
    cpus_per_worker: float = 1.0
    score_workers: int | None = None
    tracking: Tracking = "none"

    def __post_init__(self) -> None:
        check_choices(self)
        at_least(self, 1, "hidden_dim", "transformer_layers", "transformer_heads", "epochs", "batch_size",
                 "topk", "report_every", "workers", "score_workers")
        # two shifted groups (forward and backward) must fit in the channels
        at_least(self, 2, "shift_fold_div")
        require(self.hidden_dim % self.transformer_heads == 0, "hidden_dim",
                f"divisible by transformer_heads ({self.transformer_heads})", self.hidden_dim)
        at_least(self, 0, "dropout", "context_drop", "weight_decay", "category_weight",
                 "smoothness_weight", "sparsity_weight", "val_share")
        below(self, 1, "dropout", "context_drop", "val_share")
        above(self, 0, "lr", "cpus_per_worker")
