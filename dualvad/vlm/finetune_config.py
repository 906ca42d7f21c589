"""The VLM fine-tuning settings (``finetune.*``), read by :mod:`dualvad.train.finetune`.

Plain Python: no Ray, no torch, so the config loads (and is checked) before any of them starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dualvad.checks import SettingError, above, at_least, at_most, below, check_choices
from dualvad.tracking import Tracking
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


@dataclass
class FinetuneConfig:
    """Fine-tuning the VLM on the train split of both benchmarks (Ray Train + DeepSpeed)."""

    model: str = "tiny"  # a random preset ("tiny", "small": dualvad.vlm.model.PRESETS) or a hub id / folder
    workers: int = 2  # Ray Train workers (data-parallel ranks)
    cpus_per_worker: float = 0.5
    use_gpu: bool = False  # one GPU per worker, bf16; CPU runs are fp32 on gloo
    zero_stage: int = 2  # DeepSpeed ZeRO stage (0-3)
    offload: bool = False  # offload the optimizer state (and params at stage 3) to CPU
    micro_batch: int = 1  # rows per forward pass per worker
    grad_accum: int = 1  # micro-batches per optimizer step
    lr: float = 1e-4
    weight_decay: float = 0.0
    warmup_steps: int = 1  # linear warmup, then linear decay, every step at lr > 0; 0 = constant lr
    max_steps: int = 4  # optimizer steps in all; 0 = ``epochs`` passes over the mixed benchmarks
    epochs: int = 1  # used when max_steps = 0
    image_weight: float = 1.0  # draws per epoch = round(weight * rows) per benchmark
    video_weight: float = 1.0
    curriculum: Curriculum = "joint"
    max_length: int = 1024  # tokens per row; a longer row is an error
    grad_clip: float = 1.0  # max global gradient norm; 0 disables clipping
    gradient_checkpointing: bool = False
    freeze_vision: bool = False
    freeze_projector: bool = False
    # The language model's token embeddings and output head (one tensor when tied). Every answer the
    # benchmarks teach is made of existing tokens, so they need not move: frozen, they take no gradient, no
    # optimizer state and no all-reduce.
    freeze_embeddings: bool = True
    # LoRA (peft) on the language model: rank 0 = full fine-tuning. With LoRA the language model's own
    # weights are frozen; freeze_vision / freeze_projector still decide whether those parts train fully.
    lora_rank: int = 0
    lora_alpha: float = 16.0  # the adapters' output is scaled by lora_alpha / lora_rank
    lora_dropout: float = 0.05  # dropout on each adapter's input
    lora_targets: list[str] = field(default_factory=lambda: list(LORA_TARGETS))  # Linear layers of the LM
    report_every: int = 4  # optimizer steps between reports + checkpoints (and after the last)
    # Ray Train checkpoints kept while the run goes (CheckpointConfig.num_to_keep): the last one is what a
    # restart resumes from; all go once RUN/finetune is published (the export is final/)
    keep_checkpoints: int = 1
    tracking: Tracking = "none"  # "tensorboard": event files in RUN/finetune/tensorboard (dualvad.tracking)
    seed: int = 0

    def __post_init__(self) -> None:
        check_choices(self)
        at_least(self, 1, "workers", "micro_batch", "grad_accum", "epochs", "report_every", "max_length",
                 "keep_checkpoints")
        at_least(self, 0, "zero_stage", "max_steps", "warmup_steps", "lora_rank")
        at_most(self, 3, "zero_stage")
        above(self, 0, "cpus_per_worker", "lr")
        at_least(self, 0, "weight_decay", "image_weight", "video_weight", "grad_clip")
        try:  # the DeepSpeed combinations that cannot start (one definition, beside the DeepSpeed config)
            check_deepspeed_settings(self.zero_stage, self.offload)
        except ValueError as error:
            raise SettingError("offload", f"cannot run: {error}") from error
        if self.lora_rank > 0:
            self._check_lora()

    def _check_lora(self) -> None:
        """The LoRA settings, when LoRA is on: alpha > 0, dropout in [0, 1), targets, ZeRO stage <= 2."""
        above(self, 0, "lora_alpha")
        at_least(self, 0, "lora_dropout")
        below(self, 1, "lora_dropout")
        if not self.lora_targets:
            raise SettingError("lora_targets",
                               "must name at least one Linear layer when lora_rank > 0, got []")
        if self.zero_stage > 2:
            # The export merges the adapters with peft on rank 0, which needs whole parameters on that rank.
            raise SettingError("zero_stage", "must be <= 2 when lora_rank > 0 (the LoRA merge for the export "
                                             f"needs whole parameters), got {self.zero_stage}")
