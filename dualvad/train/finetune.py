"""Fine-tuning the VLM on both benchmarks with Ray Train (``TorchTrainer``) and DeepSpeed ZeRO.

The driver stages the train-split rows of ``RUN/benchmarks/{image,video}`` in the object store and hands the
trainer one Ray Data dataset per worker: that rank's mix of the two benchmarks
(:func:`dualvad.vlm.mixing.mix_schedule`), one draw a row, in order (:mod:`dualvad.pipeline.finetune_data`).
Each worker iterates its dataset in micro-batches whose JPEG decoding, image processing and tokenization run
in Ray Data's prefetch threads, ahead of the step (``finetune.data = "memory"`` loads the rank's rows into
the worker and decodes in the step instead: the old path, for the benchmark), and trains the model
wrapped by ``deepspeed.initialize`` (config from :func:`dualvad.train.deepspeed_config.deepspeed_config`;
fp32 + gloo on CPU, bf16 on GPUs; :func:`build_engine`). DeepSpeed builds the optimizer from the config's
``optimizer`` section over the trainable parameters: ``torch.optim.AdamW``, or its CPU Adam when
``finetune.offload`` moves the optimizer state to the CPU.

Every ``finetune.report_every`` optimizer steps (and after the last) the workers report the step's
metrics and a checkpoint: every rank writes its DeepSpeed shard (``save_checkpoint``) into one temporary
folder that Ray Train merges. A restarted worker group loads the last one (``load_checkpoint``) and
continues at the same step and the same draw (``FailureConfig``). The last checkpoint also holds a Hugging
Face export (``hf/``, written by rank 0 from parameters gathered with ``deepspeed.zero.GatheredParameters``),
which the driver copies to ``RUN/finetune/final``: loadable with :func:`dualvad.vlm.model.load_model` and
:func:`dualvad.vlm.processor.load_processor` (or ``AutoProcessor.from_pretrained``).

The driver also writes the export's model card (``final/README.md``, :mod:`dualvad.train.card`). Ray Train
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
import logging
import math
import os
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import ray
import ray.train
import torch
from ray.train import Checkpoint, CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from dualvad import paths
from dualvad import schema as S
from dualvad.config import DualVADConfig, FinetuneConfig
from dualvad.errors import MissingInputError, StageError
from dualvad.pipeline import finetune_data as data
from dualvad.pipeline.runtime import ensure_ray
from dualvad.rundir import RunDir, fetched_folder, open_run
from dualvad.stages.interrupts import wait_interruptibly
from dualvad.stages.registry import stage_named
from dualvad.stages.runner import Skipped, StageContext, run_stage
from dualvad.stages.settings import section
from dualvad.tracking import Tracker
from dualvad.train.flops import FlopsModel, flops_model, mfu, peak_bf16_flops, step_flops
from dualvad.train.lora import apply_lora, base_model, merged_model
from dualvad.train.progress import training_bar
from dualvad.vlm.loss import answer_loss
from dualvad.vlm.mixing import IMAGE, VIDEO, mix_schedule

log = logging.getLogger(__name__)

HF_DIR = "hf"  # the export inside the last checkpoint
TAG = "ds"  # DeepSpeed checkpoint tag
STATE_FILE = "finetune_state.json"  # step and metrics history, inside every checkpoint
KINDS = (IMAGE, VIDEO)


class FinetuneError(StageError):
    """Fine-tuning cannot start (bad settings, no training rows) or produced no checkpoint."""


@dataclass(frozen=True)
class FinetuneSummary:
    image_rows: int  # train-split rows of each benchmark
    video_rows: int
    steps: int  # optimizer steps run
    final_loss: float  # mean loss of the last step over all workers
    seconds: float
    output: str  # RUN/finetune/final (RUN/finetune/train_log.json when finetune.save_checkpoints is off)

    def __str__(self) -> str:
        return (f"finetune: {self.image_rows} image + {self.video_rows} video rows, {self.steps} steps, "
                f"final loss {self.final_loss:.4f}, {self.seconds:.1f} s -> {self.output}")


# ------------------------------------------------------------------------------------------------ driver


STAGE = stage_named("finetune")
RUN_NAME = "finetune"  # Ray Train's run in the stage's scratch: the same name resumes (train.resume)


def run_finetune(config: DualVADConfig, force: bool = False) -> FinetuneSummary | Skipped:
    """Fine-tune ``finetune.model`` on the train split of both benchmarks; export ``RUN/finetune/final``.
    Through the stage runner: a finished run with the same benchmarks and ``finetune.*`` is skipped."""
    # finetune.data changes how the rows travel, not which batches train, and keep_checkpoints what stays in
    # the scratch folder while the run goes: neither is part of the result's identity.
    settings = section(config.finetune, "cpus_per_worker", "data", "keep_checkpoints")
    return run_stage(STAGE, open_run(config.run), settings, lambda context: _finetune(context, config),
                     config.stages, force, effective=config)


def _finetune(context: StageContext, config: DualVADConfig) -> FinetuneSummary:
    started = time.perf_counter()
    run, settings = context.run, config.finetune
    ensure_ray(config.ray)
    stores = {kind: data.stage_rows(_train_rows(run, kind), kind) for kind in KINDS}  # held until fit ends
    counts = {kind: store.rows for kind, store in stores.items()}
    if not any(counts.values()):
        raise FinetuneError(f"{run.path(paths.BENCHMARKS)} has no train-split rows to fine-tune on")
    steps = total_steps(settings, counts[IMAGE], counts[VIDEO])
    try:
        datasets = data.rank_datasets(stores, settings, steps)
    except ValueError as error:  # a rank with nothing to draw from (fewer rows than workers ...)
        raise FinetuneError(f"cannot split {counts[IMAGE]} image + {counts[VIDEO]} video rows over "
                            f"{settings.workers} workers: {error}") from error
    loop = _loop_config(settings, _model_path(context.out, settings), steps)
    with training_bar("finetune", steps, "steps", key="step") as callbacks:
        trainer = TorchTrainer(
            _train_loop_per_worker,
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
                failure_config=FailureConfig(max_failures=2 if settings.save_checkpoints else 0),
                callbacks=callbacks,
            ),
            datasets=datasets,
            dataset_config=data.data_config(list(datasets)),
        )
        result = wait_interruptibly(trainer.fit)  # a SIGTERM is not held until training ends
    if result.checkpoint is None:
        raise FinetuneError("training reported no checkpoint; see the Ray Train workers' logs in "
                            f"{run.path(paths.LOGS)}/ (or run again with --verbose)")
    state = _export(context.out, result.checkpoint, model=settings.save_checkpoints,
                    tracking=settings.tracking != "none")
    final = paths.FINETUNE_FINAL_DIR if settings.save_checkpoints else paths.TRAIN_LOG_FILE
    if settings.save_checkpoints:
        _write_model_card(run, context.out, settings, counts, state["history"])
    output = run.path(paths.FINETUNE, final)
    return FinetuneSummary(counts[IMAGE], counts[VIDEO], int(state["step"]),
                           float(state["history"][-1]["loss"]), time.perf_counter() - started, output)


def _loop_config(settings: FinetuneConfig, model_path: str, steps: int) -> dict[str, Any]:
    """What every worker needs, as plain picklable values."""
    return {"settings": asdict(settings), "model_path": model_path, "total_steps": steps}


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
    """``final/README.md``: the export's model card (:mod:`dualvad.train.card`)."""
    from dualvad.train.card import model_card
    from dualvad.vlm.model import PRESETS

    manifest = json.loads(run.read_text(paths.BENCHMARKS, paths.MANIFEST_FILE))
    card = model_card(settings, tuple(PRESETS), manifest, train_rows, history)
    out.write_text(str(card), paths.FINETUNE_FINAL_DIR, paths.CARD_FILE)


# ------------------------------------------------------------------------------------------------ worker


def _train_loop_per_worker(loop: dict[str, Any]) -> None:
    """Ray Train worker: DeepSpeed data parallelism over this worker's stream of draws of both benchmarks."""
    from dualvad.vlm.processor import load_processor

    settings = FinetuneConfig(**loop["settings"])
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    torch.manual_seed(settings.seed)
    model_path = fetched_folder(loop["model_path"])  # a URI (a run on object storage): a local copy
    processor = load_processor(model_path)
    model = _build_model(model_path, settings)
    flops = flops_model(base_model(model))
    engine = build_engine(model, settings, world, loop["total_steps"])
    tracker = Tracker(settings.tracking, write=rank == 0)
    try:
        _train_steps(engine, processor, settings, loop["total_steps"], flops, tracker)
    finally:
        tracker.close()


def _train_steps(engine: Any, processor: Any, settings: FinetuneConfig, total_steps: int, flops: FlopsModel,
                 tracker: Tracker) -> None:
    """The optimizer steps of this worker from the last checkpoint (or step 0) to ``total_steps``: metrics
    logged (rank 0) and reported with a checkpoint every ``report_every`` steps and after the last."""
    rank = ray.train.get_context().get_world_rank()
    state = _resume(engine, tracker) if settings.save_checkpoints else {"step": 0, "history": []}
    encoder = data.Encoder(processor, settings.max_length, int(processor.tokenizer.pad_token_id))
    batches = data.micro_batches(ray.train.get_dataset_shard(data.shard_name(rank)), settings, rank,
                                 total_steps, state["step"] * settings.grad_accum, encoder)
    peak_flops = _device_peak_flops(engine.device)
    engine.train()
    for step in range(state["step"], total_steps):
        # The clock includes waiting for the batches: a stream that falls behind shows in samples/s.
        started, lr = time.perf_counter(), float(engine.get_lr()[0])
        totals = _optimizer_step(engine, batches, settings.grad_accum)
        metrics = _step_metrics(step, totals, lr, time.perf_counter() - started, engine.device, flops,
                                peak_flops)
        state = {**state, "step": step + 1, "history": [*state["history"], metrics]}
        if rank == 0:
            log.info("finetune step %d: %s", step + 1, _format_metrics(metrics))
        tracker.log(step + 1, metrics, skip=("step",))
        last = step + 1 == total_steps
        if (step + 1) % settings.report_every == 0 or last:
            _report(engine, processor, state, tracker, export=last, save=settings.save_checkpoints)


@dataclass(frozen=True)
class StepTotals:
    """What one worker did in one optimizer step."""

    loss: float  # mean loss over its micro-batches
    tokens: int  # non-pad tokens (image context tokens included)
    samples: int  # benchmark rows
    tiles: int  # image tiles (one per frame)


def _optimizer_step(engine: Any, batches: Iterator[dict[str, torch.Tensor]], grad_accum: int) -> StepTotals:
    """One optimizer step: forward/backward over the next ``grad_accum`` micro-batches of ``batches``
    (:class:`dualvad.pipeline.finetune_data.Encoder` batches; DeepSpeed steps the optimizer and lr schedule
    at the last)."""
    loss_sum, tokens, samples, tiles = 0.0, 0, 0, 0
    for _ in range(grad_accum):
        batch = {key: value.to(engine.device) for key, value in next(batches).items()}
        loss = answer_loss(engine, batch)
        engine.backward(loss)
        engine.step()
        loss_sum += float(loss.detach())
        tokens += int(batch["attention_mask"].sum())
        samples += int(batch["input_ids"].shape[0])
        tiles += int(batch["pixel_values"].shape[0]) if "pixel_values" in batch else 0
    return StepTotals(loss_sum / grad_accum, tokens, samples, tiles)


def build_engine(model: torch.nn.Module, settings: FinetuneConfig, world: int, steps: int) -> Any:
    """The DeepSpeed engine over ``model`` for a run of ``steps`` optimizer steps on ``world`` workers.

    DeepSpeed builds the optimizer from :func:`deepspeed_settings` over the parameters that require grad
    (frozen parts and LoRA's base weights get no optimizer state), and the lr schedule with
    :func:`dualvad.train.lr_schedule.lr_scheduler` over that optimizer. Joins the
    ``torch.distributed`` process group when one is initialized (Ray Train's, gloo or NCCL), else asks
    DeepSpeed to start one from the environment.
    """
    import deepspeed

    from dualvad.train.deepspeed_compat import skip_shm_comm_build
    from dualvad.train.lr_schedule import lr_scheduler

    if not settings.use_gpu:
        skip_shm_comm_build()  # the op it would compile serves inference only
    engine, *_ = deepspeed.initialize(
        model=model, model_parameters=[p for p in model.parameters() if p.requires_grad],
        config=deepspeed_settings(settings, world),
        lr_scheduler=lr_scheduler(warmup_steps(settings, steps), steps),
        dist_init_required=not torch.distributed.is_initialized())
    return engine


def _build_model(path: str, settings: FinetuneConfig) -> torch.nn.Module:
    """The model in train mode (fp32 master weights; DeepSpeed casts to bf16 on GPUs), set up per config."""
    from dualvad.vlm.model import load_model

    return prepare_model(load_model(path), settings)


def prepare_model(model: torch.nn.Module, settings: FinetuneConfig) -> torch.nn.Module:
    """An InternVL set up to train per ``settings``, in train mode: gradient checkpointing, LoRA adapters
    on the language model (``lora_rank > 0``; returns the ``PeftModel`` then), frozen parts."""
    if settings.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    if settings.lora_rank:
        model = apply_lora(model, settings.lora_rank, settings.lora_alpha, settings.lora_dropout,
                           settings.lora_targets)
    # After LoRA: peft froze every base weight; the vision tower and projector train unless frozen here.
    freeze(base_model(model), vision=settings.freeze_vision, projector=settings.freeze_projector,
           embeddings=settings.freeze_embeddings)
    return model.train()


def enable_gradient_checkpointing(model: torch.nn.Module) -> None:
    """Recompute each layer's activations in the backward pass instead of keeping them (non-reentrant
    ``torch.utils.checkpoint``, which needs no input that requires grad: frozen embeddings are fine)."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x; the old name warns there
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    model.config.use_cache = False  # a KV cache is useless in training and conflicts with recomputation


def freeze(model: torch.nn.Module, vision: bool, projector: bool, embeddings: bool = False) -> int:
    """Stop gradients to the vision tower, the projector and/or the language model's token embeddings and
    output head (one tensor when tied) of an InternVL; returns the number of trainable parameters."""
    parts = {"vision_tower": vision, "multi_modal_projector": projector}
    for name, frozen in parts.items():
        module = getattr(model.model, name, None)
        if module is None:
            raise FinetuneError(f"{type(model).__name__} has no model.{name}: not an InternVL model")
        module.requires_grad_(not frozen)
    if embeddings:
        model.get_input_embeddings().requires_grad_(False)
        model.get_output_embeddings().requires_grad_(False)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if trainable == 0:
        raise FinetuneError("every parameter is frozen: nothing to fine-tune")
    return trainable


def deepspeed_settings(settings: FinetuneConfig, world: int) -> dict[str, Any]:
    """The DeepSpeed config for this run on ``world`` workers (no lr schedule: see :func:`build_engine`)."""
    from dualvad.train.deepspeed_config import deepspeed_config

    return deepspeed_config(
        zero_stage=settings.zero_stage, offload=settings.offload, bf16=settings.use_gpu,
        micro_batch=settings.micro_batch, grad_accum=settings.grad_accum, world_size=world, lr=settings.lr,
        weight_decay=settings.weight_decay, grad_clip=settings.grad_clip)


def warmup_steps(settings: FinetuneConfig, steps: int) -> int:
    """``finetune.warmup_steps`` for a run of ``steps`` optimizer steps: a run shorter than its warmup
    (``max_steps = 0``: the step count follows from the data) warms up over the whole run."""
    warmup = min(settings.warmup_steps, steps)
    if warmup < settings.warmup_steps:
        log.warning("finetune.warmup_steps=%d exceeds the run's %d steps: warming up over all of them",
                    settings.warmup_steps, steps)
    return warmup


def _step_metrics(step: int, mine: StepTotals, lr: float, seconds: float, device: torch.device,
                  flops: FlopsModel, peak_flops: float | None) -> dict[str, float | None]:
    """Step metrics over all workers: mean loss, the step's lr, global samples/s and tokens/s (non-pad), the
    largest peak memory of a worker (host RSS, and GPU memory allocated by torch on GPUs; MiB), and MFU
    (``None`` without a known device peak). A collective: every rank calls it."""
    sums = torch.tensor([mine.loss, mine.tokens, mine.samples, mine.tiles], dtype=torch.float64)
    rss_mib, gpu_mib = _peak_memory_mib(device)
    peaks = torch.tensor([rss_mib, gpu_mib or 0.0], dtype=torch.float64)
    world = 1
    if torch.distributed.is_initialized():
        world = torch.distributed.get_world_size()
        torch.distributed.all_reduce(sums)
        torch.distributed.all_reduce(peaks, op=torch.distributed.ReduceOp.MAX)
    loss, tokens, samples, tiles = sums.tolist()
    seconds = max(seconds, 1e-9)
    utilisation = None
    if peak_flops is not None:
        utilisation = mfu(step_flops(flops, int(tokens), int(tiles)), seconds, world, peak_flops)
    return {"step": step + 1, "loss": loss / world, "lr": lr, "samples_per_s": samples / seconds,
            "tokens_per_s": tokens / seconds, "seconds": seconds, "mfu": utilisation,
            "peak_rss_mib": float(peaks[0]), "peak_gpu_mib": None if gpu_mib is None else float(peaks[1])}


def _format_metrics(metrics: dict[str, float | None]) -> str:
    """One log line's worth of step metrics; MFU and GPU memory only where known."""
    text = (f"loss {metrics['loss']:.4f}, lr {metrics['lr']:.2e}, {metrics['samples_per_s']:.2f} samples/s, "
            f"{metrics['tokens_per_s']:.0f} tokens/s, peak RSS {metrics['peak_rss_mib']:.0f} MiB")
    if metrics["peak_gpu_mib"] is not None:
        text += f", peak GPU {metrics['peak_gpu_mib']:.0f} MiB"
    if metrics["mfu"] is not None:
        text += f", MFU {100 * metrics['mfu']:.1f}%"
    return text


def _peak_memory_mib(device: torch.device) -> tuple[float, float | None]:
    """This process's peak resident memory (``ru_maxrss``: KiB on Linux, bytes on macOS) and, when training
    on a GPU, the peak memory torch allocated on ``device``; both in MiB (GPU ``None`` on CPU)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rss_mib = rss / 2**20 if sys.platform == "darwin" else rss / 2**10
    gpu_mib = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return rss_mib, gpu_mib


def _device_peak_flops(device: torch.device) -> float | None:
    """Dense bf16 peak FLOP/s of the training device, or ``None`` (logged) where MFU cannot be given."""
    if device.type != "cuda":
        log.info("MFU omitted: training on %s (fp32), the peak table covers GPUs in bf16", device.type)
        return None
    name = torch.cuda.get_device_name(device)
    peak = peak_bf16_flops(name)
    if peak is None:
        log.warning("MFU omitted: no bf16 peak FLOP/s known for %r (add it to "
                    "dualvad.train.flops.PEAK_BF16_FLOPS)", name)
    return peak


def _report(engine: Any, processor: Any, state: dict[str, Any], tracker: Tracker, export: bool,
            save: bool) -> None:
    """Every rank saves its DeepSpeed shard into one checkpoint (Ray Train merges the folders); rank 0 adds
    the state file, its tracking log so far (``tensorboard/``, with tracking on) and, at the end, the
    Hugging Face export ``hf/``. Without ``save`` the checkpoint holds the state file (and log) only."""
    rank = ray.train.get_context().get_world_rank()
    export = export and save
    with tempfile.TemporaryDirectory() as directory:
        if save:
            engine.save_checkpoint(directory, tag=TAG, client_state={"step": state["step"]})
        if export:
            save_export(engine, processor, os.path.join(directory, HF_DIR), write=rank == 0)
        if rank == 0:
            Path(directory, STATE_FILE).write_text(json.dumps(state))
        tracker.save(directory)  # rank 0's only: the others have nothing to write
        ray.train.report(dict(state["history"][-1]), checkpoint=Checkpoint.from_directory(directory))


def save_export(engine: Any, processor: Any, folder: str, write: bool) -> None:
    """The Hugging Face export of the engine's model (weights in the engine's dtype) and ``processor``,
    written to ``folder`` by the rank with ``write``. A collective: every rank calls it.

    ``deepspeed.zero.GatheredParameters`` gives every rank the whole parameters for the duration of the
    block at ZeRO-3 (read-only, ``modifier_rank=None``) and does nothing at ZeRO 0-2, where every rank
    holds them whole already.
    """
    import deepspeed

    with deepspeed.zero.GatheredParameters(list(engine.module.parameters()), modifier_rank=None):
        if write:
            # The last use of the engine: merging LoRA adapters in place is safe (LoRA runs at ZeRO <= 2,
            # see check_settings; no collective follows).
            merged_model(engine.module).save_pretrained(folder)
            processor.save_pretrained(folder)


def _resume(engine: Any, tracker: Tracker) -> dict[str, Any]:
    """Load the last reported checkpoint after a restart (the tracking log too); returns
    ``{"step", "history"}`` to continue."""
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return {"step": 0, "history": []}
    with checkpoint.as_directory() as directory:
        path, client = engine.load_checkpoint(directory, tag=TAG)
        if path is None:
            raise FinetuneError(f"checkpoint {checkpoint.path} holds no DeepSpeed state under tag {TAG!r}")
        state = json.loads(Path(directory, STATE_FILE).read_text())
        tracker.restore(directory)
    if int(client["step"]) != int(state["step"]):
        raise FinetuneError(f"checkpoint {checkpoint.path}: DeepSpeed state at step {client['step']}, "
                            f"log at step {state['step']}")
    log.info("resuming fine-tuning after step %d", state["step"])
    return {**state, "resumed_after": [*state.get("resumed_after", []), state["step"]]}
