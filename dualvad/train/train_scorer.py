"""Training the segment scorer with Ray Train (``TorchTrainer``, CPU workers are enough).

The training videos come from ``RUN/segments`` (video-level labels only: weak supervision);
a stratified share of them is held out (their loss and video-level AUC are reported; ``evaluate`` fits
the verdict on them). Every ``scorer.report_every`` epochs (and after the last) the loop reports its
metrics and a checkpoint through ``ray.train.report`` (each report costs Ray Train about two seconds,
far more than an epoch of this small model); a worker that dies resumes from the last checkpoint
(``FailureConfig``). The checkpoint ``scorer.checkpoint`` names (the last, or the one of lowest
validation loss) is exported to ``RUN/scorer/model`` (``scorer.json`` + ``model.pt``), which the
scoring stage loads.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import ray
import ray.train
import torch
from ray.train import Checkpoint, CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from dualvad import paths
from dualvad import schema as S
from dualvad.config import DualVADConfig
from dualvad.errors import StageError
from dualvad.eval.metrics import auc_or_none, auc_text
from dualvad.pipeline.runtime import ensure_ray
from dualvad.rundir import RunDir, open_run
from dualvad.scorer.config import ScorerConfig
from dualvad.scorer.data import (
    FeatureNormalizer,
    VideoSet,
    held_out_validation,
    labelled_training_videos,
    scoring_features,
    training_features,
    training_segments,
    video_set_from_segments,
)
from dualvad.scorer.features import cue_column_groups
from dualvad.scorer.trained import TrainedScorer, build_model, output_loss, train_epoch
from dualvad.stages.interrupts import wait_interruptibly
from dualvad.stages.records import read_input
from dualvad.stages.registry import stage_named
from dualvad.stages.runner import Skipped, StageContext, run_stage
from dualvad.stages.settings import section
from dualvad.tracking import Tracker
from dualvad.train.progress import training_bar
from dualvad.train.resume import registered_metrics
from dualvad.video.config import IngestConfig

log = logging.getLogger(__name__)


class ScorerTrainingError(StageError):
    """Training cannot start (no segments, one class only) or produced no checkpoint."""


@dataclass(frozen=True)
class ScorerTrainSummary:
    train_videos: int
    val_videos: int
    kept_epoch: int  # the epoch of the checkpoint that became the scorer (scorer.checkpoint chose it)
    kept_val_loss: float
    kept_val_auc: float | None  # None: the validation videos hold one class (undefined, not 0.0)
    seconds: float
    output: str
    resumed_after: int | None = None  # the epoch of the interrupted run's checkpoint this run went on from
    checkpoint: str = "last"  # scorer.checkpoint: how the kept epoch was chosen

    def __str__(self) -> str:
        resumed = "" if self.resumed_after is None else f"resumed after epoch {self.resumed_after}, "
        chosen = "last" if self.checkpoint == "last" else "lowest val loss"
        return (f"train-scorer: {resumed}{self.train_videos} training / {self.val_videos} validation videos, "
                f"epoch {self.kept_epoch} kept ({chosen}; val loss {self.kept_val_loss:.4f}, val AUC "
                f"{auc_text(self.kept_val_auc)}), "
                f"{self.seconds:.1f} s -> {self.output}")


STAGE = stage_named("train-scorer")
RUN_NAME = "scorer"  # Ray Train's run in the stage's scratch: the same name resumes (train.resume)


def run_train_scorer(config: DualVADConfig, force: bool = False) -> ScorerTrainSummary | Skipped:
    """Train the scorer on ``RUN/segments`` (train split) and export the chosen checkpoint, through the stage
    runner: a finished run with the same segments and ``scorer.*`` settings is skipped."""
    settings = section(config.scorer, "score_workers", "cpus_per_worker")
    return run_stage(STAGE, open_run(config.run), settings, lambda context: _train(context, config),
                     config.stages, force, effective=config)


def _train(context: StageContext, config: DualVADConfig) -> ScorerTrainSummary:
    started = time.perf_counter()
    run, settings = context.run, config.scorer
    train, val = _training_videos(run, settings)
    normalizer = FeatureNormalizer.fit(training_features(train, settings.crops)[0])
    groups = cue_column_groups(config.ingest, int(train.features.shape[-1]))
    ensure_ray(config.ray)
    interrupted = registered_metrics(run.fs, context.scratch.path(paths.RAY_DIR, RUN_NAME))
    resumed_after = None if interrupted is None else int(interrupted["epoch"])
    if resumed_after is not None:
        log.info("train-scorer: an interrupted run of these settings reached epoch %d: going on from its "
                 "checkpoint", resumed_after)
    with training_bar("train-scorer", settings.epochs, "epochs", key="epoch", offset=1) as callbacks:
        trainer = TorchTrainer(
            _train_loop_per_worker,
            train_loop_config=_loop_config(settings, train, normalizer, val, held_out=val is not train,
                                           groups=groups),
            scaling_config=ScalingConfig(num_workers=settings.workers, use_gpu=False,
                                         resources_per_worker={"CPU": settings.cpus_per_worker}),
            run_config=RunConfig(
                name=RUN_NAME,
                storage_path=context.scratch.path(paths.RAY_DIR),  # deleted once the model is published
                storage_filesystem=run.fs,
                checkpoint_config=_checkpoints_kept(settings),
                failure_config=FailureConfig(max_failures=2),
                callbacks=callbacks,
            ),
            datasets={"train": ray.data.from_items(_rows(train, normalizer, settings.crops))},
        )
        result = wait_interruptibly(trainer.fit)  # a SIGTERM is not held until training ends
    kept = (result.get_best_checkpoint(metric="val_loss", mode="min") if settings.checkpoint == "val_loss"
            else result.checkpoint)
    if kept is None:
        raise ScorerTrainingError("training reported no checkpoint; see the Ray Train workers' logs in "
                                  f"{run.path(paths.LOGS)}/ (or run again with --verbose)")
    with kept.as_directory() as directory:
        trained = TrainedScorer.load(directory)
    with result.checkpoint.as_directory() as directory:  # the last report holds every report's metrics
        history = json.loads(Path(directory, paths.SCORER_HISTORY_FILE).read_text())
        if settings.tracking != "none":  # ... and the TensorBoard events of them all
            _publish_events(context.out, directory)
    _export(context.out, trained, history)
    held_out = 0 if val is train else len(val)
    return ScorerTrainSummary(len(train), held_out, int(trained.metrics["epoch"]),
                              float(trained.metrics["val_loss"]), trained.metrics["val_auc"],
                              time.perf_counter() - started, run.path(paths.SCORER, paths.SCORER_MODEL_DIR),
                              resumed_after, settings.checkpoint)


def _checkpoints_kept(settings: ScorerConfig) -> CheckpointConfig:
    """What Ray Train keeps while training: the latest checkpoint always (its history.json holds every
    report), and with ``scorer.checkpoint=val_loss`` the one of lowest validation loss."""
    if settings.checkpoint == "last":
        return CheckpointConfig(num_to_keep=1)
    return CheckpointConfig(num_to_keep=1, checkpoint_score_attribute="val_loss",
                            checkpoint_score_order="min")


def _publish_events(out: RunDir, checkpoint_dir: str) -> None:
    """Copy the TensorBoard events the last checkpoint carries to ``tensorboard/`` in the output."""
    events = Path(checkpoint_dir, paths.TENSORBOARD_DIR)
    if not events.is_dir():
        raise ScorerTrainingError(f"the last checkpoint has no {paths.TENSORBOARD_DIR}/ although tracking is "
                                  "on (rank 0 copies its event files into every checkpoint)")
    out.publish_dir(str(events), paths.TENSORBOARD_DIR)


def _training_videos(run: RunDir, settings: ScorerConfig) -> tuple[VideoSet, VideoSet]:
    table = read_input(run, paths.SEGMENTS, unique=(S.VIDEO_ID, S.SEGMENT_INDEX))
    if table is None:
        raise ScorerTrainingError(f"{run.path(paths.SEGMENTS)} holds no segments: run `dualvad ingest` first")
    videos = video_set_from_segments(training_segments(table))
    train_all = labelled_training_videos(videos)
    unlabelled = int((~videos.split("train").labelled).sum())
    if unlabelled:  # no label, no supervision: left out of training
        log.warning("train-scorer: %d unlabelled training videos are left out", unlabelled)
    positives = int(train_all.labels.sum())
    if positives == 0 or positives == len(train_all):
        raise ScorerTrainingError(_one_class_message(videos, positives, len(train_all)))
    train, val = held_out_validation(train_all, settings.val_share, settings.seed)
    if val is None:
        # Too few videos to hold out both classes: the metrics are the training videos', and say so.
        log.warning("train split too small for a validation set with both classes (%d videos); "
                    "the validation metrics are the training videos'", len(train_all))
        return train_all, train_all
    return train, val


def _one_class_message(videos: VideoSet, positives: int, labelled: int) -> str:
    """Why the training videos cannot train a scorer, and the fixes (an unlabelled corpus gets its own)."""
    if not videos.labelled.any():
        return (f"the corpus's {len(videos)} videos are all unlabelled (a folder without annotations/): "
                "training needs normal and anomalous videos. Label some in annotations/train.txt, or score "
                "these with a scorer trained elsewhere: `dualvad score score.scorer_run=OTHER_RUN`")
    return (f"the train split has {positives} anomalous of {labelled} videos: weakly supervised "
            "training needs both normal and anomalous videos in annotations/train.txt")


def training_shard(videos: VideoSet, normalizer: FeatureNormalizer, crops: str) -> dict[str, np.ndarray]:
    """The training samples, one per video or per video and crop (``scorer.crops``): features float32
    (N, K, D) normalised, label float32 (N,) (1 = anomalous), category int64 (N,), known bool (N,)."""
    samples, owner = training_features(videos, crops)
    return {"features": normalizer(samples), "label": videos.labels[owner].astype(np.float32),
            "category": videos.category_index[owner].astype(np.int64), "known": videos.category_known[owner]}


def _rows(videos: VideoSet, normalizer: FeatureNormalizer, crops: str) -> list[dict[str, Any]]:
    """:func:`training_shard` as one row per sample, for Ray Data."""
    shard = training_shard(videos, normalizer, crops)
    return [{"features": shard["features"][i], "label": float(shard["label"][i]),
             "category": int(shard["category"][i]), "known": bool(shard["known"][i])}
            for i in range(len(shard["label"]))]


def _loop_config(settings: ScorerConfig, train: VideoSet, normalizer: FeatureNormalizer,
                 val: VideoSet, held_out: bool, groups: np.ndarray | None) -> dict[str, Any]:
    """Everything a worker needs, as picklable plain values (validation videos are small). The feature
    dim D and the categories come from the training videos; ``held_out`` is False when ``val`` is the
    training videos themselves (too few to hold out both classes); ``groups`` (D,) the columns' cue
    groups that ``scorer.group_drop`` drops, None where the features have none."""
    return {"feature_dim": int(train.features.shape[-1]), "categories": tuple(train.categories),
            "column_groups": None if groups is None else torch.from_numpy(groups),
            "normalizer": normalizer, "val_features": normalizer(scoring_features(val, settings.test_crop)),
            "val_labels": val.labels,
            "val_category": val.category_index, "val_known": val.category_known, "val_held_out": held_out,
            "settings": settings}


def _train_loop_per_worker(loop: dict[str, Any]) -> None:
    """Ray Train worker: DDP over the shards of ``train``, one report + checkpoint per epoch."""
    settings: ScorerConfig = loop["settings"]
    model, optimizer = seeded_model(settings, loop["feature_dim"], len(loop["categories"]))
    tracker = Tracker(settings.tracking, write=ray.train.get_context().get_world_rank() == 0)
    try:
        _train_epochs(model, optimizer, loop, tracker)
    finally:
        tracker.close()


def seeded_model(settings: ScorerConfig, feature_dim: int,
                 num_categories: int) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """The scorer as training starts it, from ``settings.seed`` (the same on every worker; DDP also
    broadcasts rank 0's), and its AdamW."""
    torch.manual_seed(settings.seed)
    model = build_model(settings, feature_dim, num_categories)
    return model, torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)


def train_in_process(settings: ScorerConfig, train: VideoSet, ingest: IngestConfig) -> TrainedScorer:
    """A scorer trained on ``train`` (the training videos, validation ones held out) as the stage trains it
    on one worker, in this process without Ray Train (``bench/scorer_seeds.py``); ``ingest``: the settings
    the segments were ingested with (their cue groups). No reports, the last epoch's weights. It scores as
    the stage's within float rounding (DDP's all-reduce), not bit for bit."""
    dim = int(train.features.shape[-1])
    normalizer = FeatureNormalizer.fit(training_features(train, settings.crops)[0])
    shard = {key: torch.from_numpy(value) for key, value in training_shard(train, normalizer,
                                                                          settings.crops).items()}
    groups = cue_column_groups(ingest, dim)
    model, optimizer = seeded_model(settings, dim, len(train.categories))
    train_epochs(settings, model, optimizer, shard, None if groups is None else torch.from_numpy(groups))
    return TrainedScorer(settings, dim, train.categories, normalizer, model)


def _train_epochs(model: torch.nn.Module, optimizer: torch.optim.Optimizer, loop: dict[str, Any],
                  tracker: Tracker) -> None:
    """The epochs from the last checkpoint (or 0) to ``scorer.epochs``, with a report every
    ``report_every`` epochs and after the last."""
    settings: ScorerConfig = loop["settings"]
    first_epoch, history = _resume(model, optimizer, tracker)
    model = ray.train.torch.prepare_model(model)
    # The shard is a few MB of segment features: read it once, then run the epochs in memory
    # (a Ray Data pass per epoch costs more than the epoch itself).
    shard = _load_shard(ray.train.get_dataset_shard("train"))
    rank = ray.train.get_context().get_world_rank()

    def report(epoch: int, losses: list[float]) -> None:
        if (epoch + 1) % settings.report_every == 0 or epoch + 1 == settings.epochs:
            _report_epoch(epoch, _unwrap(model), optimizer, loop, losses, history, tracker)

    train_epochs(settings, model, optimizer, shard, loop["column_groups"], rank, first_epoch, report)


def train_epochs(settings: ScorerConfig, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                 shard: dict[str, torch.Tensor], column_groups: torch.Tensor | None, rank: int = 0,
                 first_epoch: int = 0, after_epoch: Callable[[int, list[float]], None] | None = None) -> None:
    """Epochs ``first_epoch`` to ``settings.epochs`` of worker ``rank`` over its in-memory ``shard``
    (features (N, K, D) normalised, label, category, known), calling ``after_epoch(epoch, step losses)``
    after each. Also what ``bench/scorer_seeds.py`` runs in one process, without Ray."""
    generator = torch.Generator()
    for epoch in range(first_epoch, settings.epochs):
        # Every epoch's randomness (batch order, dropout) is a function of (seed, rank, epoch) alone, so a
        # run resumed from a checkpoint goes on exactly as the uninterrupted run would have.
        generator.manual_seed(epoch_seed(settings.seed, rank, epoch))
        torch.manual_seed(epoch_seed(settings.seed, rank, epoch) + 1)
        batches = shuffled_batches(shard, settings.batch_size, generator)
        losses = train_epoch(settings, model, optimizer, batches, column_groups)
        if after_epoch is not None:
            after_epoch(epoch, losses)


def epoch_seed(seed: int, rank: int, epoch: int) -> int:
    """The seed of worker ``rank``'s epoch ``epoch``: distinct across ranks and epochs, fixed by ``seed``."""
    return seed * 1_000_003 + rank * 10_007 + epoch * 2


def _load_shard(shard: Any) -> dict[str, torch.Tensor]:
    """All rows of this worker's dataset shard as tensors: features (N, K, D), label, category, known."""
    parts = list(shard.iter_torch_batches(batch_size=1024))
    return {key: torch.cat([part[key] for part in parts]) for key in parts[0]} if parts else {}


def shuffled_batches(shard: dict[str, torch.Tensor], size: int,
                     generator: torch.Generator) -> Iterator[dict[str, torch.Tensor]]:
    """Shuffled mini-batches of the in-memory shard (a new seeded order every epoch)."""
    count = len(shard["label"]) if shard else 0
    order = torch.randperm(count, generator=generator)
    for start in range(0, count, size):
        index = order[start : start + size]
        yield {key: value[index] for key, value in shard.items()}


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


def _validation_metrics(model: torch.nn.Module, loop: dict[str, Any]) -> dict[str, float | int | bool | None]:
    """On the held-out videos: ``val_loss``, the training loss (eval mode, nats), and
    ``val_auc``, the video-level AUC of each video's highest segment score (``None`` where those videos
    hold one class: undefined, reported as such rather than as a number); ``val_videos`` and
    ``val_anomalous`` count them and ``val_held_out`` says whether they were held out (False: they are
    the training videos), so a report can say what the AUC is over."""
    model.eval()
    batch = {"features": torch.from_numpy(loop["val_features"]),
             "label": torch.from_numpy(loop["val_labels"]),
             "category": torch.from_numpy(loop["val_category"]),
             "known": torch.from_numpy(loop["val_known"])}
    with torch.inference_mode():
        output = model(batch["features"])
        loss = output_loss(loop["settings"], output, batch)
    scores = output.segment_scores.max(dim=1).values
    labels = loop["val_labels"]
    return {"val_loss": float(loss), "val_auc": auc_or_none(labels, scores.numpy()),
            "val_videos": len(labels), "val_anomalous": int(labels.sum()),
            "val_held_out": bool(loop["val_held_out"])}


def _report_epoch(epoch: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                  loop: dict[str, Any], losses: list[float], history: list[dict[str, float]],
                  tracker: Tracker) -> None:
    """Report this epoch's metrics and a checkpoint; ``history`` (every report so far) gets this one and
    goes into the checkpoint too, as does the tracking log (rank 0; TensorBoard step = ``epoch``)."""
    metrics = {"epoch": epoch, "loss": float(np.mean(losses)) if losses else float("nan"),
               **_validation_metrics(model, loop)}
    history.append(metrics)
    tracker.log(epoch, metrics, skip=("epoch",))
    with tempfile.TemporaryDirectory() as directory:
        checkpoint = None
        if ray.train.get_context().get_world_rank() == 0:
            TrainedScorer(loop["settings"], loop["feature_dim"], loop["categories"],
                          loop["normalizer"], model, metrics).save(directory)
            torch.save({"optimizer": optimizer.state_dict(), "epoch": epoch}, f"{directory}/optimizer.pt")
            Path(directory, paths.SCORER_HISTORY_FILE).write_text(json.dumps(history))
            tracker.save(directory)
            checkpoint = Checkpoint.from_directory(directory)
        ray.train.report(metrics, checkpoint=checkpoint)


def _resume(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
            tracker: Tracker) -> tuple[int, list[dict[str, float]]]:
    """Load the last checkpoint after a worker failure (the tracking log too); returns the first epoch to run
    and the reports so far."""
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return 0, []
    with checkpoint.as_directory() as directory:
        model.load_state_dict(TrainedScorer.load(directory).model.state_dict())
        state = torch.load(f"{directory}/optimizer.pt", weights_only=False)
        history = json.loads(Path(directory, paths.SCORER_HISTORY_FILE).read_text())
        tracker.restore(directory)
    optimizer.load_state_dict(state["optimizer"])
    log.info("resuming scorer training after epoch %d", state["epoch"])
    return int(state["epoch"]) + 1, history


def _export(out: RunDir, trained: TrainedScorer, history: list[dict[str, float]]) -> None:
    """Write the chosen scorer into the stage's output: ``model/``, ``metrics.json`` (the exported
    checkpoint's) and ``history.json`` (every report, to show how it was chosen)."""
    with tempfile.TemporaryDirectory() as local:
        trained.save(local)
        out.publish_dir(local, paths.SCORER_MODEL_DIR)
    out.write_text(json.dumps(trained.metrics, indent=2), paths.SCORER_METRICS_FILE)
    out.write_text(json.dumps(history, indent=2), paths.SCORER_HISTORY_FILE)
