"""The DeepSpeed config builder: exact dicts for the CPU and the large-GPU settings, and its errors."""

from __future__ import annotations

import pytest

from dualvad.train.deepspeed_config import deepspeed_config
from dualvad.vlm.finetune_config import check_deepspeed_settings

COMMON = {"micro_batch": 2, "grad_accum": 4, "world_size": 3, "lr": 4e-5, "weight_decay": 0.05}


def test_stage2_fp32_cpu_exact():
    config = deepspeed_config(bf16=False, **COMMON)
    assert config == {
        "train_batch_size": 24,
        "train_micro_batch_size_per_gpu": 2,
        "gradient_accumulation_steps": 4,
        "gradient_clipping": 1.0,
        "bf16": {"enabled": False},
        "fp16": {"enabled": False},
        "zero_optimization": {
            "stage": 2, "overlap_comm": True, "contiguous_gradients": True, "reduce_bucket_size": 500_000_000,
            "allgather_bucket_size": 500_000_000, "reduce_scatter": True,
        },
        "zero_allow_untested_optimizer": True,
        "optimizer": {"type": "AdamW", "params": {"lr": 4e-5, "betas": [0.9, 0.999], "eps": 1e-8,
                                                   "weight_decay": 0.05, "torch_adam": True}},
        "wall_clock_breakdown": False,
    }


def test_stage3_offload_bf16_exact():
    config = deepspeed_config(zero_stage=3, offload=True, bf16=True, grad_clip=0.5, **COMMON)
    assert config == {
        "train_batch_size": 24,
        "train_micro_batch_size_per_gpu": 2,
        "gradient_accumulation_steps": 4,
        "gradient_clipping": 0.5,
        "bf16": {"enabled": True},
        "fp16": {"enabled": False},
        "zero_optimization": {
            "stage": 3, "overlap_comm": True, "contiguous_gradients": True, "reduce_bucket_size": 500_000_000,
            "stage3_gather_16bit_weights_on_model_save": True,
            "offload_optimizer": {"device": "cpu", "pin_memory": True},
            "offload_param": {"device": "cpu", "pin_memory": True},
        },
        "zero_allow_untested_optimizer": True,
        "optimizer": {"type": "AdamW", "params": {"lr": 4e-5, "betas": [0.9, 0.999], "eps": 1e-8,
                                                   "weight_decay": 0.05, "torch_adam": False}},
        "wall_clock_breakdown": False,
    }


def test_stage2_offload_moves_only_the_optimizer():
    zero = deepspeed_config(offload=True, bf16=True, **COMMON)["zero_optimization"]
    assert zero["offload_optimizer"] == {"device": "cpu", "pin_memory": True}
    assert "offload_param" not in zero


def test_stage0_is_plain_data_parallel():
    assert deepspeed_config(zero_stage=0, bf16=False, **COMMON)["zero_optimization"] == {"stage": 0}


@pytest.mark.parametrize("override,message", [
    ({"zero_stage": 4}, "zero_stage must be one of"),
    ({"zero_stage": 0, "offload": True}, "offload needs ZeRO stage"),
    ({"micro_batch": 0}, "micro_batch must be a positive integer, got 0"),
    ({"grad_accum": -1}, "grad_accum must be a positive integer"),
    ({"world_size": 1.5}, "world_size must be a positive integer"),
    ({"lr": 0.0}, "lr must be > 0"),
    ({"weight_decay": -0.1}, "weight_decay must be >= 0"),
    ({"grad_clip": -1.0}, "grad_clip must be >= 0"),
])
def test_invalid_settings_are_clear_errors(override, message):
    settings = {**COMMON, "bf16": False, **override}
    with pytest.raises(ValueError, match=message):
        deepspeed_config(**settings)


@pytest.mark.parametrize("settings", [
    {"bf16": False},
    {"zero_stage": 3, "offload": True, "bf16": True},
])
def test_deepspeed_accepts_the_configs(settings):
    """DeepSpeed's own parser (strict pydantic models) reads both configs; one process, no GPU needed."""
    from deepspeed.runtime.config import DeepSpeedConfig

    parsed = DeepSpeedConfig(deepspeed_config(**{**COMMON, "world_size": 1, **settings}))
    assert parsed.train_batch_size == 8 and parsed.gradient_accumulation_steps == 4
    assert parsed.zero_config.stage == settings.get("zero_stage", 2)
    assert (parsed.zero_config.offload_optimizer is not None) == settings.get("offload", False)
    assert parsed.optimizer_name == "adamw"
    assert parsed.scheduler_name is None  # the schedule is a client one (dualvad.train.lr_schedule)


@pytest.mark.parametrize("zero_stage,offload", [(0, False), (1, True), (2, True), (3, True), (3, False)])
def test_combinations_that_run_pass_the_settings_check(zero_stage, offload):
    check_deepspeed_settings(zero_stage, offload)


def test_offload_without_zero_is_rejected_with_the_reason_and_the_fix():
    with pytest.raises(ValueError, match=r"stage 0 does not partition the optimizer state.*zero_stage to 2"):
        check_deepspeed_settings(0, True)
    with pytest.raises(ValueError, match=r"zero_stage must be one of \(0, 1, 2, 3\), got 5"):
        check_deepspeed_settings(5, False)
