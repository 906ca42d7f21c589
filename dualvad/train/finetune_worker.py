"""The Ray Train worker of the fine-tuning stage (:mod:`dualvad.train.finetune`, whose docstring gives the
whole path): the model built and wrapped by DeepSpeed, the optimizer steps over this rank's stream of draws,
the metrics, the checkpoints and the Hugging Face export of the last one."""

from __future__ import annotations

import json
import logging
import os
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
import ray.train
import torch
from ray.train import Checkpoint

from dualvad.config import FinetuneConfig
from dualvad.errors import StageError
from dualvad.pipeline import finetune_data as data
from dualvad.rundir import fetched_folder
from dualvad.tracking import Tracker
from dualvad.train.flops import FlopsModel, flops_model, mfu, peak_bf16_flops, step_flops
from dualvad.train.lora import apply_lora, base_model, merged_model
from dualvad.vlm.loss import answer_loss

log = logging.getLogger(__name__)

HF_DIR = "hf"  # the export inside the last checkpoint
TAG = "ds"  # DeepSpeed checkpoint tag
STATE_FILE = "finetune_state.json"  # step and metrics history, inside every checkpoint


class FinetuneError(StageError):
    """Fine-tuning cannot start (bad settings, no training rows) or produced no checkpoint."""


def train_loop_per_worker(loop: dict[str, Any]) -> None:
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
        _train_steps(engine, processor, settings, loop, flops, tracker)
    finally:
        tracker.close()


def _train_steps(engine: Any, processor: Any, settings: FinetuneConfig, loop: dict[str, Any],
                 flops: FlopsModel, tracker: Tracker) -> None:
    """The optimizer steps of this worker from the last checkpoint (or step 0) to the loop's
    ``total_steps``: metrics logged (rank 0) and reported with a checkpoint every ``report_every`` steps and
    after the last. The loop's ``data`` and ``save_checkpoints`` are
    :func:`dualvad.train.finetune.run_finetune`'s."""
    rank, total_steps = ray.train.get_context().get_world_rank(), loop["total_steps"]
    save = loop["save_checkpoints"]
    state = _resume(engine, tracker) if save else {"step": 0, "history": []}
    encoder = data.Encoder(processor, settings.max_length, int(processor.tokenizer.pad_token_id))
    batches = data.micro_batches(ray.train.get_dataset_shard(data.shard_name(rank)), settings, rank,
                                 total_steps, state["step"] * settings.grad_accum, encoder, loop["data"])
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
            _report(engine, processor, state, tracker, export=last, save=save)


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
