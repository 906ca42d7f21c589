"""FLOPs and MFU of a fine-tuning step: exact values of the pure functions, the parameter split of the tiny
and the real InternVL, and the peak table's lookups."""

from __future__ import annotations

import dataclasses

import pytest

from dualvad.config import FinetuneConfig
from dualvad.train.finetune_worker import prepare_model
from dualvad.train.flops import (
    FlopsModel,
    PartParams,
    flops_model,
    mfu,
    part_flops,
    peak_bf16_flops,
    step_flops,
)
from dualvad.vlm.model import build_meta_model, build_tiny_model, internvl3_2b_config

SMALL = FlopsModel(vision=PartParams(trained=0, frozen=100), projector=PartParams(trained=10, frozen=0),
                   language=PartParams(trained=5, frozen=1000), patches_per_tile=17, image_tokens_per_tile=4)


def test_part_flops_counts_forward_activation_and_weight_gradients():
    trained = PartParams(trained=1000, frozen=0)
    assert part_flops(trained, items=3, backprop=True) == 3 * 6 * 1000
    crossed = PartParams(trained=0, frozen=1000)  # e.g. a LoRA-frozen language model
    assert part_flops(crossed, items=3, backprop=True) == 3 * 4 * 1000
    assert part_flops(crossed, items=3, backprop=False) == 3 * 2 * 1000  # a frozen vision tower
    mixed = PartParams(trained=10, frozen=1000)
    assert part_flops(mixed, items=2, backprop=True) == 2 * (4 * 1010 + 2 * 10)


def test_step_flops_uses_tokens_patches_and_image_tokens():
    # vision frozen and first: forward only, per patch; projector trained: 6 N per image token;
    # language model: 4 N frozen + 6 N trained per text token.
    expected = 2 * 17 * (2 * 100) + 2 * 4 * (6 * 10) + 50 * (4 * 1005 + 2 * 5)
    assert step_flops(SMALL, text_tokens=50, tiles=2) == expected == 208_780
    trained_vision = dataclasses.replace(SMALL, vision=PartParams(trained=100, frozen=0))
    assert step_flops(trained_vision, text_tokens=50, tiles=2) == expected + 2 * 17 * (4 * 100)
    assert step_flops(SMALL, text_tokens=50, tiles=0) == 50 * (4 * 1005 + 2 * 5)


def test_mfu_exact_and_its_errors():
    assert mfu(flops=989e12, seconds=1.0, world_size=2, peak_flops=989e12) == 0.5
    assert mfu(flops=6e12, seconds=2.0, world_size=1, peak_flops=312e12) == pytest.approx(6 / 624, rel=1e-15)
    with pytest.raises(ValueError, match="seconds > 0"):
        mfu(flops=1.0, seconds=0.0, world_size=1, peak_flops=1.0)


@pytest.mark.parametrize("name,peak", [
    ("NVIDIA H100 80GB HBM3", 989e12),
    ("NVIDIA H100 PCIe", 756e12),
    ("NVIDIA H100 NVL", 835e12),
    ("NVIDIA H200", 989e12),
    ("NVIDIA A100-SXM4-80GB", 312e12),
    ("NVIDIA A100 80GB PCIe", 312e12),
    ("NVIDIA L4", 121e12),
    ("NVIDIA L40S", 362e12),
    ("NVIDIA GeForce RTX 4090", None),
    ("NVIDIA L40", None),  # "L4" must not match L40
])
def test_peak_table(name, peak):
    assert peak_bf16_flops(name) == peak


def test_tiny_model_split_follows_freezing_and_lora():
    model = build_tiny_model()
    assert flops_model(model) == FlopsModel(
        vision=PartParams(36_640, 0), projector=PartParams(12_672, 0),
        # two decoder layers, final norm and the lm_head tied to the embedding table (counted once)
        language=PartParams(9_781_504, 0), patches_per_tile=17, image_tokens_per_tile=4)
    settings = FinetuneConfig(freeze_vision=True, lora_rank=4, lora_dropout=0.0)
    adapted = flops_model(prepare_model(build_tiny_model(), settings).get_base_model())
    assert adapted.vision == PartParams(0, 36_640) and adapted.projector == PartParams(12_672, 0)
    assert adapted.language == PartParams(8_192, 9_781_504)  # 2 layers x 4 x 1024 adapter params


def test_real_architecture_split_and_flops_per_token():
    model = build_meta_model(internvl3_2b_config())
    counts = flops_model(model)
    embedding = 151_674 * 1_536  # untied: the input table is a lookup, not counted
    total = counts.vision.total + counts.projector.total + counts.language.total
    assert total + embedding == sum(p.numel() for p in model.parameters()) == 2_088_957_440
    assert (counts.patches_per_tile, counts.image_tokens_per_tile) == (1025, 256)
    # one text token through the fully trained language model: 6 N
    assert step_flops(counts, text_tokens=1, tiles=0) == 6 * counts.language.total
