"""InternVL models: the real InternVL3-2B architecture and a tiny random one, built from configs in code.

Nothing here downloads: :func:`internvl3_2b_config` writes the published architecture of
``OpenGVLab/InternVL3-2B-hf`` in code (use it with :func:`build_meta_model` to inspect the real model
without weights), :func:`save_tiny_model` writes a tiny randomly initialised InternVL with a real Qwen2
tokenizer to a folder, and :func:`load_model` loads either that folder or a downloaded checkpoint.

The two scores of the design ("Scores from the VLM") are computed here from the logits of the first
answer token: :func:`yes_probability` and :func:`expected_digit_score`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    AutoModelForImageTextToText,
    InternVLConfig,
    InternVLForConditionalGeneration,
    InternVLVisionConfig,
    PreTrainedTokenizerBase,
    Qwen2Config,
)

DEFAULT_MODEL_ID = "OpenGVLab/InternVL3-2B-hf"

#: Token ids shared by every InternVL3 checkpoint (Qwen2.5 vocabulary plus InternVL's image tokens).
IMAGE_CONTEXT_TOKEN_ID = 151667
BOS_TOKEN_ID = 151643  # <|endoftext|>
EOS_TOKEN_ID = 151645  # <|im_end|>

TINY_SEED = 0
#: Tiny model geometry: 56 px tiles of 14 px patches = 4x4 patches, pixel shuffle 0.5 -> 4 image tokens.
TINY_IMAGE_SIZE = 56
TINY_PATCH_SIZE = 14
SMALL_IMAGE_SIZE = 112  # the small preset's tiles: 8x8 patches -> 16 image tokens
BINARY_ANSWERS = ("Yes", "No")
DIGITS = tuple(str(d) for d in range(10))


def image_tokens_per_tile(config: InternVLConfig) -> int:
    """Number of ``<IMG_CONTEXT>`` tokens one image tile becomes: (size / patch)^2 * downsample_ratio^2."""
    vision = config.vision_config
    patches = (vision.image_size[0] // vision.patch_size[0]) * (vision.image_size[1] // vision.patch_size[1])
    return int(round(patches * config.downsample_ratio**2))


def tiny_internvl_config(vocab_size: int | None = None) -> InternVLConfig:
    """A tiny random InternVL: 2 vision layers (hidden 32), 2 Qwen2 text layers (hidden 64), 56 px tiles.

    ``vocab_size`` defaults to the size of the tokenizer that :func:`save_tiny_model` writes (the real
    Qwen2 vocabulary with InternVL's special tokens, see :mod:`dualvad.vlm.processor`); it must cover
    every id the tokenizer can produce. Image tokens per tile: 4. Embeddings are tied to keep the file
    small (the real model's are not).
    """
    return _random_config(vocab_size, vision_hidden=32, vision_layers=2, vision_mlp=64,
                          image_size=TINY_IMAGE_SIZE, text_hidden=64, text_layers=2, text_mlp=128)


def small_internvl_config(vocab_size: int | None = None) -> InternVLConfig:
    """The ``small`` random InternVL: the largest that fine-tunes usefully on a 2-core CPU in minutes.

    4 vision layers (hidden 128, 4 heads, MLP 512) over 112 px tiles of 14 px patches (64 patches, pixel
    shuffle 0.5: 16 image tokens per tile, twice the tiny model's resolution, so small objects in a frame
    stay a few pixels wide), 4 Qwen2 text layers (hidden 256, 4 heads, 2 KV heads, MLP 1024). The tied
    151,674 x 256 embedding (38.8 M parameters) is 88% of the model; fine-tuning freezes it by default
    (``finetune.freeze_embeddings``), which leaves 5.1 M parameters to train.
    """
    return _random_config(vocab_size, vision_hidden=128, vision_layers=4, vision_mlp=512,
                          image_size=SMALL_IMAGE_SIZE, text_hidden=256, text_layers=4, text_mlp=1024)


#: Random InternVLs built from configs in code (``finetune.model`` may name one), smallest first.
PRESETS = {"tiny": tiny_internvl_config, "small": small_internvl_config}


# a vocabulary that holds every special id: the geometry comparison needs no tokenizer
_ANY_VOCAB = IMAGE_CONTEXT_TOKEN_ID + 1


def preset_of(config: dict) -> str | None:
    """The random preset (:data:`PRESETS`) whose architecture a checkpoint's ``config.json`` (as a dict) has,
    or ``None`` (InternVL3-2B or any other shape). The widths, depths and tile size decide; the weights are
    not looked at, so a preset fine-tuned for a few steps is still that preset."""
    shape = _geometry(config)
    return next((name for name, build in PRESETS.items()
                 if _geometry(build(_ANY_VOCAB).to_dict()) == shape), None)


def _geometry(config: dict) -> tuple:
    """(vision hidden, layers, MLP, tile (h, w), text hidden, layers, MLP) of an InternVL config dict."""
    vision, text = config.get("vision_config") or {}, config.get("text_config") or {}
    size = vision.get("image_size")
    tile = tuple(size) if isinstance(size, list | tuple) else (size, size)
    return (vision.get("hidden_size"), vision.get("num_hidden_layers"), vision.get("intermediate_size"), tile,
            text.get("hidden_size"), text.get("num_hidden_layers"), text.get("intermediate_size"))


def _random_config(vocab_size: int | None, vision_hidden: int, vision_layers: int, vision_mlp: int,
                   image_size: int, text_hidden: int, text_layers: int, text_mlp: int) -> InternVLConfig:
    """An InternVL3-shaped config of the given widths (4 attention heads everywhere, 2 KV heads, 14 px
    patches, pixel shuffle 0.5, tied embeddings) over the tokenizer's vocabulary (``vocab_size``: see
    :func:`tiny_internvl_config`)."""
    if vocab_size is None:
        from dualvad.vlm.processor import tokenizer_vocab_size

        vocab_size = tokenizer_vocab_size()
    vision = InternVLVisionConfig(
        hidden_size=vision_hidden, num_hidden_layers=vision_layers, num_attention_heads=4,
        intermediate_size=vision_mlp, image_size=image_size, patch_size=TINY_PATCH_SIZE, attention_bias=True,
        layer_scale_init_value=0.1, norm_type="layer_norm", use_mean_pooling=True,
    )
    text = Qwen2Config(
        vocab_size=vocab_size, hidden_size=text_hidden, intermediate_size=text_mlp,
        num_hidden_layers=text_layers, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=2048, rms_norm_eps=1e-6, rope_theta=1_000_000.0, bos_token_id=BOS_TOKEN_ID,
        eos_token_id=EOS_TOKEN_ID, pad_token_id=BOS_TOKEN_ID, tie_word_embeddings=True,
    )
    tokens = (image_size // TINY_PATCH_SIZE) ** 2 // 4  # pixel shuffle 0.5 merges 2x2 patches
    return InternVLConfig(
        vision_config=vision.to_dict(), text_config=text.to_dict(), image_token_id=IMAGE_CONTEXT_TOKEN_ID,
        image_seq_length=tokens, downsample_ratio=0.5, projector_hidden_act="gelu", vision_feature_layer=-1,
        vision_feature_select_strategy="default", tie_word_embeddings=True,
    )


def internvl3_2b_config() -> InternVLConfig:
    """The architecture of ``OpenGVLab/InternVL3-2B-hf``, written from its published config.json.

    Vision: InternViT-300M-448px-V2.5 (24 layers, hidden 1024, 16 heads, MLP 4096, 448 px, patch 14,
    qkv bias, layer scale 0.1, LayerNorm eps 1e-6, mean pooling, absolute position embeddings).
    Projector: pixel shuffle 0.5 then LayerNorm + Linear(4096, 1536) + GELU + Linear(1536, 1536).
    Text: Qwen2.5-1.5B (28 layers, hidden 1536, 12 heads, 2 KV heads, MLP 8960, vocab 151674,
    rope theta 1e6), with an untied ``lm_head`` (the checkpoint stores it; ~2.09e9 parameters in all).
    """
    vision = InternVLVisionConfig(
        hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
        image_size=448, patch_size=14, attention_bias=True, use_qk_norm=False, layer_scale_init_value=0.1,
        norm_type="layer_norm", layer_norm_eps=1e-6, use_mean_pooling=True,
        use_absolute_position_embeddings=True, hidden_act="gelu",
    )
    text = Qwen2Config(
        vocab_size=151674, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
        num_attention_heads=12, num_key_value_heads=2, max_position_embeddings=32768, rms_norm_eps=1e-6,
        rope_theta=1_000_000.0, hidden_act="silu", use_sliding_window=False, bos_token_id=BOS_TOKEN_ID,
        eos_token_id=EOS_TOKEN_ID, tie_word_embeddings=False,
    )
    return InternVLConfig(
        vision_config=vision.to_dict(), text_config=text.to_dict(), image_token_id=IMAGE_CONTEXT_TOKEN_ID,
        image_seq_length=256, downsample_ratio=0.5, projector_hidden_act="gelu", vision_feature_layer=-1,
        vision_feature_select_strategy="default", tie_word_embeddings=False,
    )


def build_meta_model(config: InternVLConfig) -> InternVLForConditionalGeneration:
    """The model for ``config`` with every tensor on ``torch.device("meta")`` (shapes only, no memory)."""
    with torch.device("meta"):
        return InternVLForConditionalGeneration(config)


def count_parameters(model: torch.nn.Module) -> int:
    """Number of distinct parameters (tied tensors counted once)."""
    return sum(p.numel() for p in model.parameters())


def build_tiny_model(seed: int = TINY_SEED) -> InternVLForConditionalGeneration:
    """The tiny random InternVL of :func:`tiny_internvl_config`, initialised with ``seed`` (float32, CPU)."""
    return build_preset_model("tiny", seed)


def build_preset_model(preset: str, seed: int = TINY_SEED) -> InternVLForConditionalGeneration:
    """The random InternVL of a preset (:data:`PRESETS`), initialised with ``seed`` (float32, CPU, eval
    mode)."""
    torch.manual_seed(seed)
    return InternVLForConditionalGeneration(_preset_config(preset)).eval()


def save_tiny_model(directory: str | Path, seed: int = TINY_SEED) -> Path:
    """Write a tiny random InternVL (weights, config, generation config) and its processor to ``directory``.

    Afterwards ``load_model(directory)`` and ``load_processor(directory)`` work offline. Returns the folder.
    """
    return save_preset_model("tiny", directory, seed)


def save_preset_model(preset: str, directory: str | Path, seed: int = TINY_SEED) -> Path:
    """Write the random InternVL of ``preset`` ("tiny" or "small") and its processor (tiles of the preset's
    size) to ``directory``, loadable offline like a downloaded checkpoint. Returns the folder."""
    from dualvad.vlm.processor import build_processor

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model = build_preset_model(preset, seed)
    model.generation_config.pad_token_id = BOS_TOKEN_ID
    model.generation_config.eos_token_id = EOS_TOKEN_ID
    model.save_pretrained(directory)
    tile = model.config.vision_config.image_size[0]
    processor = build_processor(image_size=tile, image_seq_length=image_tokens_per_tile(model.config))
    processor.save_pretrained(directory)
    return directory


def _preset_config(preset: str) -> InternVLConfig:
    if preset not in PRESETS:
        raise ValueError(f"unknown model preset {preset!r}; presets: {', '.join(PRESETS)}")
    return PRESETS[preset]()


def load_model(
    model: str | Path, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"
) -> InternVLForConditionalGeneration:
    """Load an InternVL checkpoint (hub id such as :data:`DEFAULT_MODEL_ID`, or a folder), in eval mode.

    A preset name (``"tiny"``, ``"small"``) is not a checkpoint: write one first with
    :func:`save_preset_model` and pass its folder.
    """
    if str(model) in PRESETS:
        raise ValueError(f"load_model({str(model)!r}): write one with "
                         f"save_preset_model({str(model)!r}, folder), then load that folder")
    loaded = AutoModelForImageTextToText.from_pretrained(str(model), dtype=dtype)
    if not isinstance(loaded, InternVLForConditionalGeneration):
        raise TypeError(f"{model} is a {type(loaded).__name__}, not an InternVL (model_type 'internvl')")
    return loaded.to(device).eval()


def first_token_id(tokenizer: PreTrainedTokenizerBase, answer: str) -> int:
    """Id of the first token of ``answer`` as the assistant's reply begins (no leading space)."""
    ids = tokenizer.encode(answer, add_special_tokens=False)
    if not ids:
        raise ValueError(f"the tokenizer encodes {answer!r} to no tokens")
    return ids[0]


def _check_logits(logits_last: torch.Tensor) -> torch.Tensor:
    if logits_last.dim() != 1:
        raise ValueError(f"expected one position's logits, shape (vocab,), got {tuple(logits_last.shape)}")
    return logits_last.float()


def yes_probability(logits_last: torch.Tensor, tokenizer: PreTrainedTokenizerBase) -> float:
    """P("Yes") renormalised over {"Yes", "No"}: softmax of the two first-answer-token logits.

    ``logits_last``: float tensor (vocab,), the logits for the first answer token.
    """
    logits = _check_logits(logits_last)
    ids = [first_token_id(tokenizer, answer) for answer in BINARY_ANSWERS]
    return float(torch.softmax(logits[ids], dim=0)[0])


def expected_digit_score(
    logits_last: torch.Tensor,
    tokenizer: PreTrainedTokenizerBase,
    logits_after_one: torch.Tensor | None = None,
) -> float:
    """Expected 0-10 score from the answer's digit tokens.

    Qwen's tokenizer writes numbers one digit per token, so the first answer token is one of "0".."9"
    and "10" begins with "1". With p_d the softmax of ``logits_last`` over the ten digit tokens:

    - without ``logits_after_one``: E = sum_d d * p_d (the "1" mass counts as 1; range [0, 9]);
    - with ``logits_after_one`` (the logits of the position after the answer "1", i.e. one more forward
      step with "1" appended), the "1" mass is split: q = P("0" | "1") over the whole vocabulary,
      10 gets p_1 * q and 1 gets p_1 * (1 - q); E = sum_{d != 1} d * p_d + p_1 * (1 + 9 q), range [0, 10].

    ``logits_last``, ``logits_after_one``: float tensors (vocab,). Returns a float.
    """
    logits = _check_logits(logits_last)
    ids = [first_token_id(tokenizer, digit) for digit in DIGITS]
    probabilities = torch.softmax(logits[ids], dim=0)
    values = torch.arange(len(DIGITS), dtype=probabilities.dtype)
    if logits_after_one is not None:
        q = torch.softmax(_check_logits(logits_after_one), dim=0)[ids[0]]
        values[1] = 1.0 + 9.0 * q
    return float((probabilities * values).sum())
