"""Training the segment scorer with Ray Train (``TorchTrainer``, CPU workers are enough).

The training videos come from ``RUN/segments`` (video-level labels only: weak supervision);
a stratified share of them is held out to choose the best checkpoint by its loss on them
(the training objective; their video-level AUC is reported too, but on a few dozen videos it
ties across most checkpoints and then picks the earliest, often undertrained, one).
Every ``scorer.report_every`` epochs (and after the last) the loop reports its metrics and a
checkpoint through ``ray.train.report`` (each report costs Ray Train about two seconds, far
more than an epoch of this small model); a worker that dies
resumes from the last checkpoint (``FailureConfig``). The best checkpoint is exported to
``RUN/scorer/model`` (``scorer.json`` + ``model.pt``), which the scoring stage loads.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
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
from dualvad.scorer.data import FeatureNormalizer, VideoSet, train_validation_split, video_set_from_segments
from dualvad.scorer.trained import TrainedScorer, batch_loss, build_model, output_loss
from dualvad.stages import Skipped, Stage, StageContext, read_input, run_stage, section

log = logging.getLogger(__name__)



class ScorerTrainingError(StageError):
    """Training cannot start (no segments, one class only) or produced no checkpoint."""


@dataclass(frozen=True)
class ScorerTrainSummary:
    train_videos: int
    val_videos: int
    best_epoch: int
    best_val_loss: float
    best_val_auc: float | None  # None: the validation videos hold one class (undefined, not 0.0)
    seconds: float
    output: str

    def __str__(self) -> str:
        return (f"train-scorer: {self.train_videos} training / {self.val_videos} validation videos, "
                f"best epoch {self.best_epoch} (val loss {self.best_val_loss:.4f}, val AUC "
                f"{auc_text(self.best_val_auc)}), "
                f"{self.seconds:.1f} s -> {self.output}")


STAGE = Stage("train-scorer", paths.SCORER, inputs=(paths.SEGMENTS,))


def train_scorer(config: DualVADConfig, force: bool = False) -> ScorerTrainSummary | Skipped:
    """Train the scorer on ``RUN/segments`` (train split) and export the best checkpoint, through the stage
    runner: a finished run with the same segments and ``scorer.*`` settings is skipped."""
    settings = section(config.scorer, "score_workers", "cpus_per_worker")
    return run_stage(STAGE, open_run(config.run), settings, lambda context: _train(context, config),
                     config.stages, force, effective=config)


def _train(context: StageContext, config: DualVADConfig) -> ScorerTrainSummary:
    started = time.perf_counter()
    run, settings = context.run, config.scorer
    train, val = _training_videos(run, settings)
    normalizer = FeatureNormalizer.fit(train.features)
    ensure_ray(config.ray)
    trainer = TorchTrainer(
        _train_loop_per_worker,
        train_loop_config=_loop_config(settings, train, normalizer, val, held_out=val is not train),
        scaling_config=ScalingConfig(num_workers=settings.workers, use_gpu=False,
                                     resources_per_worker={"CPU": settings.cpus_per_worker}),
        run_config=RunConfig(
            name=f"scorer-{int(time.time())}",
            storage_path=context.scratch.path(paths.RAY_DIR),  # deleted once the model is published
            storage_filesystem=run.fs,
            checkpoint_config=CheckpointConfig(num_to_keep=2, checkpoint_score_attribute="val_loss",
                                               checkpoint_score_order="min"),
            failure_config=FailureConfig(max_failures=2),
        ),
        datasets={"train": ray.data.from_items(_rows(train, normalizer))},
    )
    result = trainer.fit()
    best = result.get_best_checkpoint(metric="val_loss", mode="min")
    if best is None:
        raise ScorerTrainingError("training reported no checkpoint; see the Ray Train logs above")
    with best.as_directory() as directory:
        trained = TrainedScorer.load(directory)
    with result.checkpoint.as_directory() as directory:  # the last report holds every report's metrics
        history = json.loads(Path(directory, paths.SCORER_HISTORY_FILE).read_text())
    _export(context.out, trained, history)
    held_out = 0 if val is train else len(val)
    return ScorerTrainSummary(len(train), held_out, int(trained.metrics["epoch"]),
                              float(trained.metrics["val_loss"]), trained.metrics["val_auc"],
                              time.perf_counter() - started,
                              run.path(paths.SCORER, paths.SCORER_MODEL_DIR))


def _training_videos(run: RunDir, settings: ScorerConfig) -> tuple[VideoSet, VideoSet]:
    table = read_input(run, paths.SEGMENTS, unique=(S.VIDEO_ID, S.SEGMENT_INDEX))
    if table is None:
        raise ScorerTrainingError(f"{run.path(paths.SEGMENTS)} holds no segments: run `dualvad ingest` first")
    train_all = video_set_from_segments(table).split("train")
    positives = int(train_all.labels.sum())
    if positives == 0 or positives == len(train_all):
        raise ScorerTrainingError(
            f"the train split has {positives} anomalous of {len(train_all)} videos: weakly supervised "
            "training needs both normal and anomalous videos in annotations/train.txt")
    train, val = train_validation_split(train_all, settings.val_share, settings.seed)
    if len(np.unique(val.labels)) < 2:
        # Too few videos to hold out both classes: pick checkpoints by training AUC, and say so.
        log.warning("train split too small for a validation set with both classes (%d videos); "
                    "the best checkpoint is chosen by video AUC on the training videos", len(train_all))
        return train_all, train_all
    return train, val


def _rows(videos: VideoSet, normalizer: FeatureNormalizer) -> list[dict[str, Any]]:
    features = normalizer(videos.features)
    return [{"features": features[i], "label": float(videos.labels[i]),
             "category": int(videos.category_index[i]), "known": bool(videos.category_known[i])}
            for i in range(len(videos))]


def _loop_config(settings: ScorerConfig, train: VideoSet, normalizer: FeatureNormalizer,
                 val: VideoSet, held_out: bool) -> dict[str, Any]:
    """Everything a worker needs, as picklable plain values (validation videos are small). The feature
    dim D and the categories come from the training videos; ``held_out`` is False when ``val`` is the
    training videos themselves (too few to hold out both classes)."""
    return {"feature_dim": int(train.features.shape[-1]), "categories": tuple(train.categories),
            "normalizer": normalizer, "val_features": normalizer(val.features), "val_labels": val.labels,
            "val_category": val.category_index, "val_known": val.category_known, "val_held_out": held_out,
            "settings": settings}


def _train_loop_per_worker(loop: dict[str, Any]) -> None:
    """Ray Train worker: DDP over the shards of ``train``, one report + checkpoint per epoch."""
    settings: ScorerConfig = loop["settings"]
    torch.manual_seed(settings.seed)  # same init on every worker (DDP also broadcasts rank 0's)
    model = build_model(settings, loop["feature_dim"], len(loop["categories"]))
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    first_epoch, history = _resume(model, optimizer)
    model = ray.train.torch.prepare_model(model)
    # The shard is a few MB of segment features: read it once, then run the epochs in memory
    # (a Ray Data pass per epoch costs more than the epoch itself).
    shard = _load_shard(ray.train.get_dataset_shard("train"))
    generator = torch.Generator().manual_seed(settings.seed + ray.train.get_context().get_world_rank())
    for epoch in range(first_epoch, settings.epochs):
        model.train()
        losses = []
        for batch in _batches(shard, settings.batch_size, generator):
            loss = batch_loss(settings, model, batch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
        if (epoch + 1) % settings.report_every == 0 or epoch + 1 == settings.epochs:
            _report_epoch(epoch, _unwrap(model), optimizer, loop, losses, history)


def _load_shard(shard: Any) -> dict[str, torch.Tensor]:
    """All rows of this worker's dataset shard as tensors: features (N, K, D), label, category, known."""
    parts = list(shard.iter_torch_batches(batch_size=1024))
    return {key: torch.cat([part[key] for part in parts]) for key in parts[0]} if parts else {}


def _batches(shard: dict[str, torch.Tensor], size: int, generator: torch.Generator):
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
                  loop: dict[str, Any], losses: list[float], history: list[dict[str, float]]) -> None:
    """Report this epoch's metrics and a checkpoint; ``history`` (every report so far) gets this one and
    goes into the checkpoint too."""
    metrics = {"epoch": epoch, "loss": float(np.mean(losses)) if losses else float("nan"),
               **_validation_metrics(model, loop)}
    history.append(metrics)
    with tempfile.TemporaryDirectory() as directory:
        checkpoint = None
        if ray.train.get_context().get_world_rank() == 0:
            TrainedScorer(loop["settings"], loop["feature_dim"], loop["categories"],
                          loop["normalizer"], model, metrics).save(directory)
            torch.save({"optimizer": optimizer.state_dict(), "epoch": epoch}, f"{directory}/optimizer.pt")
            Path(directory, paths.SCORER_HISTORY_FILE).write_text(json.dumps(history))
            checkpoint = Checkpoint.from_directory(directory)
        ray.train.report(metrics, checkpoint=checkpoint)


def _resume(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> tuple[int, list[dict[str, float]]]:
    """Load the last checkpoint after a worker failure; returns the first epoch to run and the reports so
    far."""
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return 0, []
    with checkpoint.as_directory() as directory:
        model.load_state_dict(TrainedScorer.load(directory).model.state_dict())
        state = torch.load(f"{directory}/optimizer.pt", weights_only=False)
        history = json.loads(Path(directory, paths.SCORER_HISTORY_FILE).read_text())
    optimizer.load_state_dict(state["optimizer"])
    log.info("resuming scorer training after epoch %d", state["epoch"])
    return int(state["epoch"]) + 1, history


def _export(out: RunDir, trained: TrainedScorer, history: list[dict[str, float]]) -> None:
    """Write the best scorer into the stage's output: ``model/``, ``metrics.json`` (the exported
    checkpoint's) and ``history.json`` (every report, to show how it was chosen)."""
    with tempfile.TemporaryDirectory() as local:
        trained.save(local)
        out.publish_dir(local, paths.SCORER_MODEL_DIR)
    out.write_text(json.dumps(trained.metrics, indent=2), paths.SCORER_METRICS_FILE)
    out.write_text(json.dumps(history, indent=2), paths.SCORER_HISTORY_FILE)
