"""Fine-tuning the VLM on both benchmarks with Ray Train (``TorchTrainer``) and DeepSpeed ZeRO.

The driver stages the train-split rows of ``RUN/benchmarks/{image,video}`` in the object store and hands the
trainer one Ray Data dataset per worker: that rank's mix of the two benchmarks
(:func:`dualvad.vlm.mixing.mix_schedule`), one draw a row, in order (:mod:`dualvad.pipeline.finetune_data`).
Each worker iterates its dataset in micro-batches whose JPEG decoding, image processing and tokenization run
in Ray Data's prefetch threads, ahead of the step (``run_finetune(data="memory")`` loads the rank's rows
into the worker and decodes in the step instead: the old path, for bench/finetune.py), and trains the model
wrapped by ``deepspeed.initialize`` (config from :func:`dualvad.train.deepspeed_config.deepspeed_config`;
fp32 + gloo on CPU, bf16 on GPUs; :mod:`dualvad.train.finetune_worker`). DeepSpeed builds the optimizer
from the config's ``optimizer`` section over the trainable parameters: ``torch.optim.AdamW``, or its CPU
Adam when ``finetune.offload`` moves the optimizer state to the CPU.

Every ``finetune.report_every`` optimizer steps (and after the last) the workers report the step's
metrics and a checkpoint: every rank writes its DeepSpeed shard (``save_checkpoint``) into one temporary
folder that Ray Train merges. A restarted worker group loads the last one (``load_checkpoint``) and
continues at the same step and the same draw (``FailureConfig``). The last checkpoint also holds a Hugging
Face export (``hf/``, written by rank 0 from parameters gathered with ``deepspeed.zero.GatheredParameters``),
which the driver copies to ``RUN/finetune/final``: loadable with :func:`dualvad.vlm.model.load_model` and
:func:`dualvad.vlm.processor.load_processor` (or ``AutoProcessor.from_pretrained``).

The driver also writes the export's model card (``final/README.md``, :mod:`dualvad.vlm.card`). Ray Train
keeps ``finetune.keep_checkpoints`` checkpoints (the last always) in the stage's scratch folder, deleted once
the output is published. ``finetune.tracking = "tensorboard"``: rank 0 logs every step's metrics as
TensorBoard scalars (:class:`dualvad.tracking.Tracker`); each checkpoint carries the log, and the last one's
is published as ``RUN/finetune/tensorboard``.

``finetune.lora_rank > 0`` trains LoRA adapters on the language model instead of its weights
(:mod:`dualvad.train.lora`); rank 0 merges them into the weights for the export, which stays a plain
InternVL. Each step logs loss, lr, samples/s, tokens/s, the peak memory of the busiest worker and, on GPUs
the table of :mod:`dualvad.train.flops` knows, the model FLOPs utilisation (MFU).

``finetune.model = "tiny"`` or ``"small"`` writes that random InternVL preset
(:data:`dualvad.vlm.model.PRESETS`) once to ``RUN/finetune/base`` and trains that; otherwise the model is a
hub id, a folder every worker can read, or a pyarrow URI (``s3://...``), which each worker copies to its
local disk first (:func:`dualvad.rundir.fetched_folder`; a preset in a run on object storage too).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import ray
import ray.train
from ray.train import Checkpoint, CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from dualvad import paths
from dualvad import schema as S
from dualvad.config import DualVADConfig, FinetuneConfig
from dualvad.errors import MissingInputError
from dualvad.pipeline import finetune_data as data
from dualvad.pipeline.finetune_data import DataPath
from dualvad.pipeline.runtime import ensure_ray
from dualvad.rundir import RunDir, open_run
from dualvad.stages.interrupts import wait_interruptibly
from dualvad.stages.registry import stage_named
from dualvad.stages.runner import Skipped, StageContext, run_stage
from dualvad.stages.settings import section
from dualvad.train.finetune_worker import HF_DIR, STATE_FILE, FinetuneError, train_loop_per_worker
from dualvad.train.progress import training_bar
from dualvad.vlm.mixing import IMAGE, VIDEO, mix_schedule

KINDS = (IMAGE, VIDEO)


@dataclass(frozen=True)
class FinetuneSummary:
    image_rows: int  # train-split rows of each benchmark
    video_rows: int
    steps: int  # optimizer steps run
    final_loss: float  # mean loss of the last step over all workers
    seconds: float
    output: str  # RUN/finetune/final (RUN/finetune/train_log.json without save_checkpoints)

    def __str__(self) -> str:
        return (f"finetune: {self.image_rows} image + {self.video_rows} video rows, {self.steps} steps, "
                f"final loss {self.final_loss:.4f}, {self.seconds:.1f} s -> {self.output}")


STAGE = stage_named("finetune")
RUN_NAME = "finetune"  # Ray Train's run in the stage's scratch: the same name resumes (train.resume)


def run_finetune(config: DualVADConfig, force: bool = False, *, data: DataPath = "stream",
                 save_checkpoints: bool = True) -> FinetuneSummary | Skipped:
    """Fine-tune ``finetune.model`` on the train split of both benchmarks; export ``RUN/finetune/final``.
    Through the stage runner: a finished run with the same benchmarks and ``finetune.*`` is skipped.

    ``data`` and ``save_checkpoints`` are bench/finetune.py's switches, not config keys (a user's run streams
    and checkpoints): ``data="memory"`` loads each rank's rows into its worker (:data:`DataPath`);
    ``save_checkpoints=False`` (throughput runs) reports the step log only: no DeepSpeed state (no resume,
    no restart) and no export, the output is ``train_log.json``.
    """
    # keep_checkpoints changes what stays in the scratch folder while the run goes, not the result; nor does
    # the data path (how the rows travel, not which batches train).
    settings = section(config.finetune, "cpus_per_worker", "keep_checkpoints")
    # A run without checkpoints publishes no model: its record must not let a run that needs one skip.
    external = None if save_checkpoints else {"checkpoints": "none"}
    return run_stage(STAGE, open_run(config.run), settings,
                     lambda context: _finetune(context, config, data, save_checkpoints),
                     config.stages, force, external=external, effective=config)


def _finetune(context: StageContext, config: DualVADConfig, data_path: DataPath,
              save_checkpoints: bool) -> FinetuneSummary:
    started = time.perf_counter()
    run, settings = context.run, config.finetune
    ensure_ray(config.ray)
    stores = {kind: data.stage_rows(_train_rows(run, kind), kind) for kind in KINDS}  # held until fit ends
    counts = {kind: store.rows for kind, store in stores.items()}
    if not any(counts.values()):
        raise FinetuneError(f"{run.path(paths.BENCHMARKS)} has no train-split rows to fine-tune on")
    steps = total_steps(settings, counts[IMAGE], counts[VIDEO])
    try:
        datasets = data.rank_datasets(stores, settings, steps, data_path)
    except ValueError as error:  # a rank with nothing to draw from (fewer rows than workers ...)
        raise FinetuneError(f"cannot split {counts[IMAGE]} image + {counts[VIDEO]} video rows over "
                            f"{settings.workers} workers: {error}") from error
    loop = _loop_config(settings, _model_path(context.out, settings), steps, data_path, save_checkpoints)
    with training_bar("finetune", steps, "steps", key="step") as callbacks:
        trainer = TorchTrainer(
            train_loop_per_worker,
            train_loop_config=loop,
            scaling_config=ScalingConfig(num_workers=settings.workers, use_gpu=settings.use_gpu,
                                         resources_per_worker=_worker_resources(settings)),
            run_config=RunConfig(
                name=RUN_NAME,
                storage_path=context.scratch.path(paths.RAY_DIR),  # deleted once the model is published
                storage_filesystem=run.fs,
                # Ray keeps the latest checkpoint whatever the number (the one a restart resumes from).
                checkpoint_config=CheckpointConfig(num_to_keep=settings.keep_checkpoints),
                # Without checkpoints a restart would begin again at step 0: fail instead.
                failure_config=FailureConfig(max_failures=2 if save_checkpoints else 0),
                callbacks=callbacks,
            ),
            datasets=datasets,
            dataset_config=data.data_config(list(datasets)),
        )
        result = wait_interruptibly(trainer.fit)  # a SIGTERM is not held until training ends
    if result.checkpoint is None:
        raise FinetuneError("training reported no checkpoint; see the Ray Train workers' logs in "
                            f"{run.path(paths.LOGS)}/ (or run again with --verbose)")
    state = _export(context.out, result.checkpoint, model=save_checkpoints,
                    tracking=settings.tracking != "none")
    final = paths.FINETUNE_FINAL_DIR if save_checkpoints else paths.TRAIN_LOG_FILE
    if save_checkpoints:
        _write_model_card(run, context.out, settings, counts, state["history"])
    output = run.path(paths.FINETUNE, final)
    return FinetuneSummary(counts[IMAGE], counts[VIDEO], int(state["step"]),
                           float(state["history"][-1]["loss"]), time.perf_counter() - started, output)


def _loop_config(settings: FinetuneConfig, model_path: str, steps: int, data_path: DataPath,
                 save_checkpoints: bool) -> dict[str, Any]:
    """What every worker needs, as plain picklable values."""
    return {"settings": asdict(settings), "model_path": model_path, "total_steps": steps,
            "data": data_path, "save_checkpoints": save_checkpoints}


def total_steps(settings: FinetuneConfig, image_rows: int, video_rows: int) -> int:
    """Optimizer steps of the run: ``max_steps``, or else ``epochs`` passes over the mixed draws
    (``round(w * rows)`` per benchmark) divided by the global batch, rounded up."""
    if settings.max_steps:
        return settings.max_steps
    draws = len(mix_schedule(image_rows, video_rows, settings.image_weight, settings.video_weight,
                             settings.curriculum, settings.epochs, settings.seed))
    return max(1, math.ceil(draws / (settings.workers * settings.micro_batch * settings.grad_accum)))


def _worker_resources(settings: FinetuneConfig) -> dict[str, float]:
    resources = {"CPU": settings.cpus_per_worker}
    if settings.use_gpu:
        resources["GPU"] = 1.0
    return resources


def _train_rows(run: RunDir, kind: str) -> ray.data.Dataset:
    """The train-split rows of one benchmark (all its shards, in file order) as a lazy Ray Dataset."""
    files = run.parquet_files(paths.BENCHMARKS, kind)
    if not files:
        raise MissingInputError(f"{run.path(paths.BENCHMARKS, kind)} holds no shards: "
                                "run `dualvad build-benchmarks` first")
    dataset = ray.data.read_parquet(files, filesystem=run.fs)
    return dataset.filter(expr=f"{S.SPLIT} == 'train'")


def _model_path(out: RunDir, settings: FinetuneConfig) -> str:
    """The folder or hub id workers load; a preset (``"tiny"``, ``"small"``) is written once into the
    output (``base/``)."""
    from dualvad.vlm.model import PRESETS, save_preset_model

    if settings.model not in PRESETS:
        return settings.model
    if not out.local:  # written locally, then uploaded: workers fetch it from the run
        if not out.exists(paths.FINETUNE_BASE_DIR, "config.json"):
            with tempfile.TemporaryDirectory(prefix="dualvad-preset-") as local:
                out.publish_dir(str(save_preset_model(settings.model, local, seed=settings.seed)),
                                paths.FINETUNE_BASE_DIR, marker="config.json")  # checked above
        return out.sub(paths.FINETUNE_BASE_DIR).uri
    base = Path(out.path(paths.FINETUNE_BASE_DIR))
    if not (base / "config.json").is_file():
        save_preset_model(settings.model, base, seed=settings.seed)
    return str(base)


def _export(out: RunDir, checkpoint: Checkpoint, model: bool, tracking: bool = False) -> dict[str, Any]:
    """Write the step log to ``train_log.json`` in the stage's output and, with ``model``, copy the last
    checkpoint's ``hf/`` to ``final/``; with ``tracking``, its TensorBoard events to ``tensorboard/``.

    Returns the checkpoint's state: ``{"step": int, "history": [per-step metrics]}``.
    """
    with checkpoint.as_directory() as directory:
        state = json.loads(Path(directory, STATE_FILE).read_text())
        source = os.path.join(directory, HF_DIR)
        if model and not os.path.isdir(source):
            raise FinetuneError(f"the last checkpoint has no {HF_DIR}/ export (rank 0 writes it at the end)")
        if model:
            out.publish_dir(source, paths.FINETUNE_FINAL_DIR)
        if tracking:
            _publish_events(out, directory)
    out.write_text(json.dumps(state, indent=2), paths.TRAIN_LOG_FILE)
    return state


def _publish_events(out: RunDir, checkpoint_dir: str) -> None:
    """Copy the TensorBoard events the last checkpoint carries to ``tensorboard/`` in the output."""
    events = os.path.join(checkpoint_dir, paths.TENSORBOARD_DIR)
    if not os.path.isdir(events):
        raise FinetuneError(f"the last checkpoint has no {paths.TENSORBOARD_DIR}/ although tracking is on "
                            "(rank 0 copies its event files into every checkpoint)")
    out.publish_dir(events, paths.TENSORBOARD_DIR)


def _write_model_card(run: RunDir, out: RunDir, settings: FinetuneConfig, train_rows: dict[str, int],
                      history: list[dict[str, Any]]) -> None:
    """``final/README.md``: the export's model card (:mod:`dualvad.vlm.card`)."""
    from dualvad.vlm.card import model_card
    from dualvad.vlm.model import PRESETS

    manifest = json.loads(run.read_text(paths.BENCHMARKS, paths.MANIFEST_FILE))
    card = model_card(settings, tuple(PRESETS), manifest, train_rows, history)
    out.write_text(str(card), paths.FINETUNE_FINAL_DIR, paths.CARD_FILE)
