"""The DeepSpeed JSON config of the VLM fine-tuning, derived from a few settings (never hand-written).

:func:`deepspeed_config` gives ZeRO stage 2 by default (3 optional), optional CPU offload of the
optimizer state (and of the parameters at stage 3), bf16 on GPUs / fp32 on CPU, gradient clipping and
an AdamW optimizer section. No ``scheduler`` section: the learning-rate schedule is
:mod:`dualvad.train.lr_schedule`'s, handed to ``deepspeed.initialize`` as a client scheduler (DeepSpeed's
own warmup schedules run the first two steps at lr 0).

The optimizer: DeepSpeed builds it from this config's ``optimizer`` section (the training loop passes no
client optimizer). The section names AdamW with ``torch_adam: true`` (DeepSpeed builds
``torch.optim.AdamW``, no compiled ops) unless the optimizer state is offloaded, where DeepSpeed builds its
CPU Adam (``DeepSpeedCPUAdam``, a C++ op it JIT-compiles on first use), the optimizer ZeRO-Offload
supports. ``zero_allow_untested_optimizer`` lets ZeRO wrap torch's AdamW, which is not on its tested list.

The rules on combinations of settings are :func:`dualvad.vlm.finetune_config.check_deepspeed_settings`'s,
which the config loader calls before any Ray work starts.

No Ray here: the Ray Train loop calls this and hands the dict to ``deepspeed.initialize(config=...)``.
"""

from __future__ import annotations

from dualvad.vlm.finetune_config import check_deepspeed_settings

ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8
BUCKET_SIZE = 500_000_000


def _check(
    zero_stage: int, micro_batch: int, grad_accum: int, world_size: int, lr: float, weight_decay: float,
    grad_clip: float, offload: bool,
) -> None:
    """Raise ``ValueError`` naming the first setting that is out of range."""
    check_deepspeed_settings(zero_stage, offload)
    for name, value in (("micro_batch", micro_batch), ("grad_accum", grad_accum),
                        ("world_size", world_size)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    if grad_clip < 0:
        raise ValueError(f"grad_clip must be >= 0 (0 disables clipping), got {grad_clip}")


def zero_section(zero_stage: int, offload: bool) -> dict:
    """The ``zero_optimization`` block: stage, bucket settings, CPU offload of the optimizer (and params
    at stage 3)."""
    section: dict = {"stage": zero_stage}
    if zero_stage == 0:
        return section
    section.update({"overlap_comm": zero_stage >= 2, "contiguous_gradients": zero_stage >= 2,
                    "reduce_bucket_size": BUCKET_SIZE})
    if zero_stage in (1, 2):
        section.update({"allgather_bucket_size": BUCKET_SIZE, "reduce_scatter": True})
    if zero_stage == 3:
        section.update({"stage3_gather_16bit_weights_on_model_save": True})
    if offload:
        section["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
        if zero_stage == 3:
            section["offload_param"] = {"device": "cpu", "pin_memory": True}
    return section


def deepspeed_config(
    *,
    zero_stage: int = 2,
    offload: bool = False,
    bf16: bool,
    micro_batch: int,
    grad_accum: int,
    world_size: int,
    lr: float,
    weight_decay: float,
    grad_clip: float = 1.0,
) -> dict:
    """The DeepSpeed config dict for ``world_size`` data-parallel workers.

    ``bf16``: True on GPUs (bf16 weights/activations, fp32 master weights), False for fp32 (CPU).
    ``train_batch_size = micro_batch * grad_accum * world_size``. ``lr``: the peak learning rate (the
    client scheduler scales it per step). ``grad_clip``: max global gradient norm (0 disables).
    """
    _check(zero_stage, micro_batch, grad_accum, world_size, lr, weight_decay, grad_clip, offload)
    return {
        "train_batch_size": micro_batch * grad_accum * world_size,
        "train_micro_batch_size_per_gpu": micro_batch,
        "gradient_accumulation_steps": grad_accum,
        "gradient_clipping": float(grad_clip),
        "bf16": {"enabled": bool(bf16)},
        "fp16": {"enabled": False},
        "zero_optimization": zero_section(zero_stage, offload),
        "zero_allow_untested_optimizer": True,
        "optimizer": {
            "type": "AdamW",
            "params": {"lr": lr, "betas": list(ADAM_BETAS), "eps": ADAM_EPS, "weight_decay": weight_decay,
                       "torch_adam": not offload},
        },
        "wall_clock_breakdown": False,
    }
