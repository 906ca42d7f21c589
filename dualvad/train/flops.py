"""Model FLOPs utilisation (MFU) of an InternVL fine-tuning step, from parameter counts and the step's inputs.

The FLOPs of a step (the matmul rule: a parameter used on one input item costs 2 FLOPs forward, one
multiply and one add), per model part of ``N`` parameters of which ``T`` are trained, over ``items`` items:

- forward: ``2 N`` per item, every part;
- backward, activation gradients: ``2 N`` per item where the gradient passes through the part (it holds a
  trained parameter, or a part before it does: the language model always, the projector when it or the
  vision tower trains, the vision tower when it trains);
- backward, weight gradients: ``2 T`` per item.

So a fully trained part costs ``6 N`` per item, a frozen part the gradient crosses (the language model under
LoRA) ``4 N``, a frozen part before everything trained (a frozen vision tower) ``2 N``. Items: the language
model (decoder and ``lm_head``) runs once per text token (image context tokens included, padding excluded),
the projector once per image token, the vision tower once per patch and class token of each tile.

Not counted: input embeddings (a table lookup), attention scores (``QK^T`` and ``AV``, about
``4 * layers * seq * hidden`` per token; at 4k tokens about a tenth of the 2B model's forward), and the
forward recomputed under gradient checkpointing (MFU counts the model's FLOPs, not the hardware's). The
estimate therefore errs low.

``MFU = step FLOPs over all workers / step seconds / (workers * peak bf16 FLOP/s of one device)``, with
the dense (no sparsity) bf16 tensor-core peak of :data:`PEAK_BF16_FLOPS`. An unknown device gives no MFU
(``None``): a guessed peak would give a wrong figure that looks right.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from dualvad.vlm.model import image_tokens_per_tile

#: Dense bf16 tensor-core peak FLOP/s per device, from the vendors' data sheets (the "with sparsity"
#: figures halved). Matched in order on the upper-cased name's tokens: each row's tokens must all occur.
PEAK_BF16_FLOPS: tuple[tuple[tuple[str, ...], float], ...] = (
    (("H100", "PCIE"), 756e12),
    (("H100", "NVL"), 835e12),
    (("H100",), 989e12),  # SXM5 ("NVIDIA H100 80GB HBM3")
    (("H200", "NVL"), 835e12),
    (("H200",), 989e12),  # SXM
    (("GH200",), 989e12),
    (("A100",), 312e12),  # SXM4 and PCIe alike
    (("L40S",), 362e12),
    (("L4",), 121e12),
    (("A10",), 125e12),
)


@dataclass(frozen=True)
class PartParams:
    """Parameters of one model part: ``trained`` (gradients computed) and ``frozen``."""

    trained: int
    frozen: int

    @property
    def total(self) -> int:
        return self.trained + self.frozen


@dataclass(frozen=True)
class FlopsModel:
    """What the FLOPs of an InternVL step depend on, besides the step's tokens and tiles."""

    vision: PartParams  # the vision tower (patch embedding, encoder layers)
    projector: PartParams  # the multi-modal projector (after pixel shuffle)
    language: PartParams  # decoder layers, final norm and lm_head; input embeddings excluded
    patches_per_tile: int  # vision tower items per tile: (size / patch)^2 patches + 1 class token
    image_tokens_per_tile: int  # projector items per tile


def part_flops(params: PartParams, items: int, backprop: bool) -> int:
    """FLOPs of one forward and backward pass of a part over ``items`` items (see the module docstring):
    ``items * (2 N + (2 N if backprop else 0) + 2 T)``."""
    activation_grads = 2 * params.total if backprop else 0
    return items * (2 * params.total + activation_grads + 2 * params.trained)


def step_flops(model: FlopsModel, text_tokens: int, tiles: int) -> int:
    """Training FLOPs of one step over ``text_tokens`` non-pad tokens and ``tiles`` image tiles."""
    vision_trains = model.vision.trained > 0
    return (part_flops(model.vision, tiles * model.patches_per_tile, backprop=vision_trains)
            + part_flops(model.projector, tiles * model.image_tokens_per_tile,
                         backprop=vision_trains or model.projector.trained > 0)
            + part_flops(model.language, text_tokens, backprop=True))


def mfu(flops: float, seconds: float, world_size: int, peak_flops: float) -> float:
    """Model FLOPs utilisation: ``flops`` done by ``world_size`` devices in ``seconds``, over their peak."""
    if seconds <= 0 or world_size < 1 or peak_flops <= 0:
        raise ValueError(f"mfu needs seconds > 0, world_size >= 1, peak_flops > 0; got {seconds}, "
                         f"{world_size}, {peak_flops}")
    return flops / seconds / (world_size * peak_flops)


def peak_bf16_flops(device_name: str) -> float | None:
    """Dense bf16 peak FLOP/s of the device named ``device_name`` (``torch.cuda.get_device_name()``), or
    ``None`` when the table does not know it."""
    tokens = set(re.split(r"[\s\-_]+", device_name.upper()))
    for required, peak in PEAK_BF16_FLOPS:
        if all(token in tokens for token in required):
            return peak
    return None


def _split(parameters) -> PartParams:
    trained = frozen = 0
    for parameter in parameters:
        if parameter.requires_grad:
            trained += parameter.numel()
        else:
            frozen += parameter.numel()
    return PartParams(trained, frozen)


def flops_model(model: torch.nn.Module) -> FlopsModel:
    """The :class:`FlopsModel` of an InternVL (``InternVLForConditionalGeneration``, LoRA adapters in place
    or not) as it will train: reads ``requires_grad``; works on the meta device."""
    language_model, lm_head = model.model.language_model, model.lm_head
    embedding = language_model.get_input_embeddings().weight
    # A tied lm_head shares the embedding table: count it once, as the lm_head matmul it also is.
    language_params = [p for p in language_model.parameters() if p is not embedding]
    language_params += [p for p in lm_head.parameters() if all(p is not q for q in language_params)]
    vision = model.config.vision_config
    patches = (vision.image_size[0] // vision.patch_size[0]) * (vision.image_size[1] // vision.patch_size[1])
    return FlopsModel(_split(model.model.vision_tower.parameters()),
                      _split(model.model.multi_modal_projector.parameters()),
                      _split(language_params), patches + 1, image_tokens_per_tile(model.config))
