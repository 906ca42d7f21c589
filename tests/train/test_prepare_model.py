"""Setting the model up for training, outside Ray: LoRA adapters (exact trainable counts, the merge for the
export) and gradient checkpointing (same loss and gradients, layers recomputed)."""

from __future__ import annotations

import dataclasses
import re

import pytest
import torch

from dualvad.config import ConfigError, FinetuneConfig
from dualvad.train.finetune_worker import prepare_model
from dualvad.train.lora import merged_model, target_pattern
from dualvad.vlm.model import IMAGE_CONTEXT_TOKEN_ID, TINY_IMAGE_SIZE, build_tiny_model, load_model

LORA = FinetuneConfig(lora_rank=4, lora_alpha=8.0, lora_dropout=0.0)
# Per decoder layer, rank r adds r * (in + out) per adapted Linear (hidden 64, 2 KV heads of 16, MLP 128):
# q 64+64, k 64+32, v 64+32, o 64+64, gate 64+128, up 64+128, down 128+64 = 1024; 2 layers.
ADAPTER_PARAMS_PER_RANK = 2 * 1024
VISION_PARAMS, PROJECTOR_PARAMS = 36_640, 12_672


def batch(seed: int = 0) -> dict[str, torch.Tensor]:
    """A row with one image tile: 3 text tokens, the tile's 4 image tokens, 5 text tokens; labels = ids."""
    generator = torch.Generator().manual_seed(seed)
    text = torch.randint(100, 1000, (8,), generator=generator)
    ids = torch.cat([text[:3], torch.full((4,), IMAGE_CONTEXT_TOKEN_ID), text[3:]])[None]
    pixels = torch.randn(1, 3, TINY_IMAGE_SIZE, TINY_IMAGE_SIZE, generator=generator)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "pixel_values": pixels, "labels": ids}


def trainable(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("freeze_vision,freeze_projector,extra", [
    (True, True, 0),
    (True, False, PROJECTOR_PARAMS),
    (False, False, VISION_PARAMS + PROJECTOR_PARAMS),
])
def test_lora_trainable_parameters_exact(freeze_vision, freeze_projector, extra):
    settings = dataclasses.replace(LORA, freeze_vision=freeze_vision, freeze_projector=freeze_projector)
    model = prepare_model(build_tiny_model(), settings)
    assert trainable(model) == 4 * ADAPTER_PARAMS_PER_RANK + extra
    lora = {name for name, p in model.named_parameters() if "lora_" in name}
    assert len(lora) == 2 * 7 * 2 and all(".language_model." in name for name in lora)
    assert not any(p.requires_grad for name, p in model.named_parameters()
                   if ".language_model." in name and name not in lora)


def test_lora_targets_only_the_language_model():
    pattern = target_pattern(["q_proj", "down_proj"])
    assert re.fullmatch(pattern, "model.language_model.layers.0.self_attn.q_proj")
    assert re.fullmatch(pattern, "model.language_model.layers.1.mlp.down_proj")
    assert not re.fullmatch(pattern, "model.vision_tower.encoder.layer.0.attention.q_proj")
    assert not re.fullmatch(pattern, "model.language_model.layers.0.self_attn.q_proj_extra")
    with pytest.raises(ValueError, match=r"LoRA targets \['q_prj'\] name no Linear layer"):
        prepare_model(build_tiny_model(), dataclasses.replace(LORA, lora_targets=["q_proj", "q_prj"]))


def test_lora_merge_gives_the_same_outputs_as_a_plain_model(tmp_path):
    model = prepare_model(build_tiny_model(), dataclasses.replace(LORA, freeze_vision=True))
    with torch.no_grad():  # B starts at zero (adapters a no-op): make them change the output
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.5, generator=torch.Generator().manual_seed(len(name)))
    inputs = batch()
    with torch.inference_mode():
        adapted = model.eval()(**inputs).logits
        base = build_tiny_model()(**inputs).logits
    assert not torch.allclose(adapted, base, atol=1e-3)
    plain = merged_model(model)
    assert type(plain).__name__ == "InternVLForConditionalGeneration"
    assert not any("lora" in key or "base_layer" in key for key in plain.state_dict())
    with torch.inference_mode():
        torch.testing.assert_close(plain(**inputs).logits, adapted, rtol=1e-5, atol=1e-5)
    plain.save_pretrained(tmp_path)
    reloaded = load_model(tmp_path)
    with torch.inference_mode():
        torch.testing.assert_close(reloaded(**inputs).logits, adapted, rtol=1e-5, atol=1e-5)


def test_lora_settings_errors():
    with pytest.raises(ConfigError, match="'lora_rank' must be >= 0, got -1"):
        dataclasses.replace(LORA, lora_rank=-1)
    with pytest.raises(ConfigError, match="'lora_dropout' must be < 1, got 1.0"):
        dataclasses.replace(LORA, lora_dropout=1.0)
    with pytest.raises(ConfigError, match="'zero_stage' must be <= 2 when lora_rank > 0"):
        dataclasses.replace(LORA, zero_stage=3)
    with pytest.raises(ConfigError, match="'warmup_steps' must be >= 0, got -1"):
        dataclasses.replace(LORA, warmup_steps=-1)
    assert dataclasses.replace(LORA, zero_stage=3, lora_rank=0).zero_stage == 3  # full fine-tuning at ZeRO-3


def _loss_grads_and_calls(checkpointing: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor], int]:
    """Loss, gradients and calls of the first decoder layer's attention for one training forward/backward
    (hooks on the layer itself sit outside the checkpoint; its children run inside it, and the recompute
    stops once the last saved tensor is back, inside the MLP, so a pre-hook on the attention counts)."""
    model = prepare_model(build_tiny_model(), FinetuneConfig(gradient_checkpointing=checkpointing))
    calls = []
    model.model.language_model.layers[0].self_attn.register_forward_pre_hook(lambda *_: calls.append(1))
    loss = model(**batch(1)).loss
    loss.backward()
    return loss.detach(), {n: p.grad for n, p in model.named_parameters()}, len(calls)


def test_gradient_checkpointing_recomputes_and_keeps_loss_and_gradients():
    loss, grads, calls = _loss_grads_and_calls(checkpointing=False)
    checked_loss, checked_grads, checked_calls = _loss_grads_and_calls(checkpointing=True)
    assert (calls, checked_calls) == (1, 2)  # the layer runs again in the backward pass
    torch.testing.assert_close(checked_loss, loss, rtol=0, atol=0)
    assert grads.keys() == checked_grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(checked_grads[name], grad, rtol=1e-6, atol=1e-7, msg=name)


def test_gradient_checkpointing_setting_turns_it_on():
    model = prepare_model(build_tiny_model(), FinetuneConfig(gradient_checkpointing=True))
    assert model.is_activation_checkpointing and model.training and model.config.use_cache is False
    assert not prepare_model(build_tiny_model(), FinetuneConfig()).is_activation_checkpointing
