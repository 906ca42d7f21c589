"""The segment scorer's settings (``scorer.*``): the model, its loss and its training, defined once.

The model is :class:`dualvad.scorer.refinevad.RefineVAD` (``kind: refinevad``) or the MIL ranking baseline
(``kind: mil``); its loss is :func:`dualvad.scorer.losses.refinevad_loss`; the Ray Train loop in
``dualvad.train.train_scorer`` trains it. A trained scorer's checkpoint stores this config whole
(``dualvad.scorer.trained``) and is rebuilt from it. The feature dimension and the categories come from
the data, not from here. Reasons and measurements behind the defaults: ``docs/decisions.md``.
"""

from __future__ import annotations

import typing
from typing import Annotated, Literal

from pydantic import Field, model_validator

from dualvad.tracking import Tracking
from dualvad.validation import config_section, rule_error

ScorerKind = Literal["refinevad", "mil"]  # "mil": Sultani et al. 2018, the baseline
SCORER_KINDS: tuple[str, ...] = typing.get_args(ScorerKind)
# segments ingested from feature files with C crops: "each" trains on every crop as a sample of its video
# (RTFM, UR-DMU, VadCLIP), "mean" on the crops' mean; one crop (or decoded videos): the same either way
CropTraining = Literal["each", "mean"]
# which training checkpoint becomes the scorer: the last epoch's, or the one of lowest validation loss
CheckpointChoice = Literal["last", "val_loss"]


@config_section
class ScoreConfig:
    """The scoring stage (``score.*``), apart from the scorer it runs.

    scorer_run: a run directory (path or URI) whose trained scorer (``OTHER_RUN/scorer``) ``dualvad score``
        uses instead of this run's own: a corpus of unlabelled videos scored with a scorer trained on a
        labelled one. ``""``: this run's ``RUN/scorer``. Kept apart from :class:`ScorerConfig`, which a
        checkpoint stores whole: where a scorer is used does not change the scorer.
    """

    scorer_run: str = ""


@config_section
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
        group_drop: training-only probability, per video and cue group of the ``motion`` extractor, of
            setting that group's input columns to their training mean (0 after the normaliser), in [0, 1)
            (not in the paper; any kind of scorer): each kind of event must be found from each group alone,
            so no group a new scene disturbs (natural motion, a busier texture) decides for the others.
            Segments of other features (``clip``, feature files) have no groups: nothing is dropped.
        ensemble: M, scorers of this kind and these settings trained side by side from different draws
            (initial weights, dropout, dropped groups; the same batches), scoring as the mean of their
            segment scores (:mod:`dualvad.scorer.ensemble`; not in the paper); 1: one scorer. Training and
            scoring cost M times one scorer's.

    Loss (:func:`dualvad.scorer.losses.refinevad_loss`; the MIL weight is 1):
        topk: k of the top-k MIL loss. category_weight, smoothness_weight, sparsity_weight: the other
        parts' weights (smoothness and sparsity after RTFM's 8e-4 and 8e-3).

    Training (Ray Train): epochs, batch_size (videos per step per worker), lr, weight_decay (AdamW),
    val_share (share of training videos held out: validation metrics, the verdict's fit in ``evaluate``),
    checkpoint (``last``: the last epoch's weights become the scorer; ``val_loss``: the reported checkpoint
    of lowest validation loss, which on a few validation videos is as much chance as choice),
    report_every (epochs between reports + checkpoints), seed, workers, cpus_per_worker; crops (segments with
    several crops: every crop a training sample, or their mean) and test_crop (the crop that validation,
    scoring and evaluation read, ``None`` for the crops' mean; VadCLIP tests UCF-Crime on crop 5 and
    XD-Violence on crop 0), both stored with the scorer, so the run records them; score_workers is
    the scoring stage's actor pool (None = up to one per CPU). tracking: ``"tensorboard"`` also writes
    every report's metrics as TensorBoard events to ``RUN/scorer/tensorboard`` (:mod:`dualvad.tracking`).
    """

    kind: ScorerKind = "refinevad"
    hidden_dim: Annotated[int, Field(ge=1)] = 128
    use_motar: bool = True
    use_core: bool = True
    # two shifted groups (forward and backward) must fit in the channels
    shift_fold_div: Annotated[int, Field(ge=2)] = 8
    transformer_layers: Annotated[int, Field(ge=1)] = 1
    transformer_heads: Annotated[int, Field(ge=1)] = 4
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.1
    context_scale_init: float = 0.1
    context_drop: Annotated[float, Field(ge=0, lt=1)] = 0.8
    centre_context: bool = True
    group_drop: Annotated[float, Field(ge=0, lt=1)] = 0.5
    ensemble: Annotated[int, Field(ge=1)] = 5
    epochs: Annotated[int, Field(ge=1)] = 40
    batch_size: Annotated[int, Field(ge=1)] = 16
    lr: Annotated[float, Field(gt=0)] = 3e-3
    weight_decay: Annotated[float, Field(ge=0)] = 1e-4
    topk: Annotated[int, Field(ge=1)] = 3
    category_weight: Annotated[float, Field(ge=0)] = 0.5
    smoothness_weight: Annotated[float, Field(ge=0)] = 8e-4
    sparsity_weight: Annotated[float, Field(ge=0)] = 8e-3
    val_share: Annotated[float, Field(ge=0, lt=1)] = 0.2
    checkpoint: CheckpointChoice = "last"
    report_every: Annotated[int, Field(ge=1)] = 5
    seed: int = 0
    workers: Annotated[int, Field(ge=1)] = 1
    cpus_per_worker: Annotated[float, Field(gt=0)] = 1.0
    score_workers: Annotated[int, Field(ge=1)] | None = None
    tracking: Tracking = "none"
    crops: CropTraining = "each"
    test_crop: Annotated[int, Field(ge=0)] | None = None

    @model_validator(mode="after")
    def _heads_divide_width(self) -> ScorerConfig:
        if self.hidden_dim % self.transformer_heads:
            raise rule_error("hidden_dim", f"must be divisible by transformer_heads "
                                           f"({self.transformer_heads}), got {self.hidden_dim}")
        return self
