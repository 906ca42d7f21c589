"""The VLM fine-tuning settings (``finetune.*``), read by :mod:`dualvad.train.finetune`.

Plain Python: no Ray, no torch, so the config loads (and is checked) before any of them starts.
"""

from __future__ import annotations

from dataclasses import field
from typing import Annotated

from pydantic import Field, model_validator

from dualvad.tracking import Tracking
from dualvad.validation import config_section, rule_error
from dualvad.vlm.mixing import Curriculum

#: The decoder's attention and MLP projections (Qwen2 names), the usual LoRA targets.
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
ZERO_STAGES = (0, 1, 2, 3)  # DeepSpeed's ZeRO stages


def check_deepspeed_settings(zero_stage: int, offload: bool) -> None:
    """Raise ``ValueError`` with the reason and the fix when ``zero_stage`` / ``offload`` cannot run."""
    if zero_stage not in ZERO_STAGES:
        raise ValueError(f"zero_stage must be one of {ZERO_STAGES}, got {zero_stage!r}")
    if offload and zero_stage == 0:
        raise ValueError("offload needs ZeRO stage 1, 2 or 3: stage 0 does not partition the optimizer "
                         "state, so there is nothing to move to the CPU; set zero_stage to 2 (the default) "
                         "or offload to false")


@config_section
class FinetuneConfig:
    """Fine-tuning the VLM on the train split of both benchmarks (Ray Train + DeepSpeed)."""

    model: str = "tiny"  # a random preset ("tiny", "small": dualvad.vlm.model.PRESETS) or a hub id / folder
    workers: Annotated[int, Field(ge=1)] = 2  # Ray Train workers (data-parallel ranks)
    cpus_per_worker: Annotated[float, Field(gt=0)] = 0.5
    use_gpu: bool = False  # one GPU per worker, bf16; CPU runs are fp32 on gloo
    zero_stage: Annotated[int, Field(ge=0, le=3)] = 2  # DeepSpeed ZeRO stage
    offload: bool = False  # offload the optimizer state (and params at stage 3) to CPU
    micro_batch: Annotated[int, Field(ge=1)] = 1  # rows per forward pass per worker
    grad_accum: Annotated[int, Field(ge=1)] = 1  # micro-batches per optimizer step
    lr: Annotated[float, Field(gt=0)] = 1e-4
    weight_decay: Annotated[float, Field(ge=0)] = 0.0
    # linear warmup, then linear decay, every step at lr > 0; 0 = constant lr
    warmup_steps: Annotated[int, Field(ge=0)] = 1
    # optimizer steps in all; 0 = ``epochs`` passes over the mixed benchmarks
    max_steps: Annotated[int, Field(ge=0)] = 4
    epochs: Annotated[int, Field(ge=1)] = 1  # used when max_steps = 0
    image_weight: Annotated[float, Field(ge=0)] = 1.0  # draws per epoch = round(weight * rows) per benchmark
    video_weight: Annotated[float, Field(ge=0)] = 1.0
    curriculum: Curriculum = "joint"
    max_length: Annotated[int, Field(ge=1)] = 1024  # tokens per row; a longer row is an error
    grad_clip: Annotated[float, Field(ge=0)] = 1.0  # max global gradient norm; 0 disables clipping
    gradient_checkpointing: bool = False
    freeze_vision: bool = False
    freeze_projector: bool = False
    # The language model's token embeddings and output head (one tensor when tied). Every answer the
    # benchmarks teach is made of existing tokens, so they need not move: frozen, they take no gradient, no
    # optimizer state and no all-reduce.
    freeze_embeddings: bool = True
    # LoRA (peft) on the language model: rank 0 = full fine-tuning. With LoRA the language model's own
    # weights are frozen; freeze_vision / freeze_projector still decide whether those parts train fully.
    lora_rank: Annotated[int, Field(ge=0)] = 0
    lora_alpha: float = 16.0  # the adapters' output is scaled by lora_alpha / lora_rank (> 0 with LoRA)
    lora_dropout: float = 0.05  # dropout on each adapter's input (in [0, 1) with LoRA)
    lora_targets: list[str] = field(default_factory=lambda: list(LORA_TARGETS))  # Linear layers of the LM
    # optimizer steps between reports + checkpoints (and after the last)
    report_every: Annotated[int, Field(ge=1)] = 4
    # Ray Train checkpoints kept while the run goes (CheckpointConfig.num_to_keep): the last one is what a
    # restart resumes from; all go once RUN/finetune is published (the export is final/)
    keep_checkpoints: Annotated[int, Field(ge=1)] = 1
    tracking: Tracking = "none"  # "tensorboard": event files in RUN/finetune/tensorboard (dualvad.tracking)
    seed: int = 0

    @model_validator(mode="after")
    def _runnable(self) -> FinetuneConfig:
        """The DeepSpeed combinations that cannot start, and the LoRA settings when LoRA is on."""
        try:  # one definition, beside the DeepSpeed config
            check_deepspeed_settings(self.zero_stage, self.offload)
        except ValueError as error:
            raise rule_error("offload", f"cannot run: {error}") from error
        if self.lora_rank > 0:
            self._check_lora()
        return self

    def _check_lora(self) -> None:
        """alpha > 0, dropout in [0, 1), at least one target, ZeRO stage <= 2 (rules only LoRA has)."""
        if not self.lora_alpha > 0:
            raise rule_error("lora_alpha", f"must be > 0, got {self.lora_alpha!r}")
        if not 0 <= self.lora_dropout < 1:
            rule = ">= 0" if self.lora_dropout < 0 else "< 1"
            raise rule_error("lora_dropout", f"must be {rule}, got {self.lora_dropout!r}")
        if not self.lora_targets:
            raise rule_error("lora_targets", "must name at least one Linear layer when lora_rank > 0, got []")
        if self.zero_stage > 2:
            # The export merges the adapters with peft on rank 0, which needs whole parameters on that rank.
            raise rule_error("zero_stage", "must be <= 2 when lora_rank > 0 (the LoRA merge for the export "
                                           f"needs whole parameters), got {self.zero_stage}")
