"""InternVL loading: the real architecture on the meta device, a tiny random model saved and reloaded
offline, the frame processor, and the scores read from logits."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from dualvad.vlm.model import (
    DEFAULT_MODEL_ID,
    IMAGE_CONTEXT_TOKEN_ID,
    TINY_IMAGE_SIZE,
    build_meta_model,
    count_parameters,
    expected_digit_score,
    first_token_id,
    image_tokens_per_tile,
    internvl3_2b_config,
    load_model,
    preset_of,
    save_tiny_model,
    small_internvl_config,
    tiny_internvl_config,
    yes_probability,
)
from dualvad.vlm.processor import IMAGE_CONTEXT_TOKEN, load_processor

S = TINY_IMAGE_SIZE


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    """A folder with a tiny random InternVL and its processor, written once for this module."""
    return save_tiny_model(tmp_path_factory.mktemp("tiny_internvl"))


@pytest.fixture(scope="module")
def tiny(tiny_folder):
    """(model, processor) of the tiny InternVL, loaded back from its folder."""
    return load_model(tiny_folder), load_processor(tiny_folder)


def frame(seed: int, height: int = 64, width: int = 64) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def chat(processor, text: str) -> str:
    messages = [{"role": "user", "content": [{"type": "text", "text": text}]}]
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def test_preset_of_names_the_random_presets_by_their_shape(tiny_folder):
    # as config.json stores them: image_size as a list, any vocabulary
    assert preset_of(json.loads((tiny_folder / "config.json").read_text())) == "tiny"
    assert preset_of(small_internvl_config(1000).to_dict()) == "small"
    assert preset_of(internvl3_2b_config().to_dict()) is None
    deeper = tiny_internvl_config(1000).to_dict()
    deeper["text_config"]["num_hidden_layers"] = 3
    assert preset_of(deeper) is None and preset_of({}) is None


def test_real_architecture_has_2_09_billion_parameters():
    config = internvl3_2b_config()
    model = build_meta_model(config)
    total = count_parameters(model)
    print(f"{DEFAULT_MODEL_ID}: {total} parameters")
    assert 2.05e9 < total < 2.13e9
    assert next(model.parameters()).device.type == "meta"
    assert image_tokens_per_tile(config) == config.image_seq_length == 256
    assert model.lm_head.weight is not model.get_input_embeddings().weight


def test_one_frame_prompt_forward_and_generate(tiny):
    model, processor = tiny
    text = chat(processor, "<image>\nIs anything unusual happening? Answer Yes or No.")
    assert text.startswith("<|im_start|>user\n") and text.endswith("<|im_start|>assistant\n")
    inputs = processor(text=text, images=[frame(0)], return_tensors="pt")

    ids = inputs["input_ids"][0].tolist()
    tokens_per_tile = image_tokens_per_tile(model.config)
    assert tokens_per_tile == processor.image_seq_length == 4
    assert ids.count(IMAGE_CONTEXT_TOKEN_ID) == tokens_per_tile
    start = ids.index(processor.start_image_token_id)
    assert ids[start + 1 + tokens_per_tile] == processor.end_image_token_id
    assert inputs["pixel_values"].shape == (1, 3, S, S)
    assert inputs["pixel_values"].dtype == torch.float32
    assert inputs["attention_mask"].shape == inputs["input_ids"].shape

    with torch.no_grad():
        logits = model(**inputs).logits
    assert logits.shape == (1, len(ids), model.config.text_config.vocab_size)
    assert torch.isfinite(logits).all()

    generated = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert generated.shape[1] <= len(ids) + 3 and generated.shape[1] > len(ids)


def test_two_frames_give_two_image_blocks(tiny):
    model, processor = tiny
    text = chat(processor, "Frame1: <image>\nFrame2: <image>\nDescribe.")
    inputs = processor(text=text, images=[frame(1), Image.fromarray(frame(2, 48, 96))], return_tensors="pt")
    ids = inputs["input_ids"][0].tolist()
    assert ids.count(processor.start_image_token_id) == ids.count(processor.end_image_token_id) == 2
    assert ids.count(IMAGE_CONTEXT_TOKEN_ID) == 2 * image_tokens_per_tile(model.config)
    assert inputs["pixel_values"].shape == (2, 3, S, S)
    with torch.no_grad():
        assert torch.isfinite(model(**inputs).logits).all()


def test_chat_template_image_item_and_stock_placeholder_match_alias(tiny):
    _, processor = tiny
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Why?"}]}]
    templated = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert f"{IMAGE_CONTEXT_TOKEN}\nWhy?" in templated
    image = frame(3)
    stock = processor(text=templated, images=[image], return_tensors="pt")
    aliased = templated.replace(IMAGE_CONTEXT_TOKEN, "<image>")
    alias = processor(text=aliased, images=[image], return_tensors="pt")
    assert torch.equal(stock["input_ids"], alias["input_ids"])
    assert torch.equal(stock["pixel_values"], alias["pixel_values"])


def test_pil_and_numpy_frames_agree(tiny):
    _, processor = tiny
    image = frame(4)
    from_numpy = processor(text="<image>", images=[image], return_tensors="pt")["pixel_values"]
    from_pil = processor(text="<image>", images=[Image.fromarray(image)], return_tensors="pt")["pixel_values"]
    assert torch.allclose(from_numpy, from_pil)


def test_max_tiles_enables_dynamic_tiling(tiny_folder):
    processor = load_processor(tiny_folder, max_tiles=4)
    inputs = processor(text="<image>", images=[frame(5, 64, 128)], return_tensors="pt")
    tiles = inputs["pixel_values"].shape[0]
    assert tiles == 3  # a 2x1 grid plus the thumbnail
    assert inputs["input_ids"][0].tolist().count(IMAGE_CONTEXT_TOKEN_ID) == tiles * processor.image_seq_length
    with pytest.raises(ValueError, match="max_tiles"):
        load_processor(tiny_folder, max_tiles=0)


def test_mismatched_placeholders_and_videos_are_errors(tiny):
    _, processor = tiny
    with pytest.raises(ValueError):
        processor(text="<image> <image>", images=[frame(6)], return_tensors="pt")
    with pytest.raises(ValueError, match="videos"):
        processor(text="<video>", videos=[np.stack([frame(7)] * 2)], return_tensors="pt")


def test_load_model_tiny_is_not_a_checkpoint():
    with pytest.raises(ValueError, match=r"save_preset_model\('tiny', folder\)"):
        load_model("tiny")


def test_yes_probability_exact(tiny):
    _, processor = tiny
    tokenizer = processor.tokenizer
    logits = torch.full((len(tokenizer),), -5.0)
    logits[first_token_id(tokenizer, "Yes")] = math.log(3.0)
    logits[first_token_id(tokenizer, "No")] = 0.0
    logits[first_token_id(tokenizer, "Maybe")] = 100.0  # outside {Yes, No}: ignored
    assert yes_probability(logits, tokenizer) == pytest.approx(0.75, abs=1e-6)
    with pytest.raises(ValueError, match="vocab"):
        yes_probability(logits[None], tokenizer)


def test_expected_digit_score_exact(tiny):
    _, processor = tiny
    tokenizer = processor.tokenizer
    assert first_token_id(tokenizer, "10") == first_token_id(tokenizer, "1")
    digit = {d: first_token_id(tokenizer, str(d)) for d in range(10)}

    logits = torch.full((len(tokenizer),), -1e4)
    logits[digit[0]] = logits[digit[9]] = 2.0
    logits[first_token_id(tokenizer, "Yes")] = 50.0  # not a digit: ignored
    assert expected_digit_score(logits, tokenizer) == pytest.approx(4.5, abs=1e-6)

    logits = torch.full((len(tokenizer),), -1e4)
    logits[digit[1]] = logits[digit[3]] = 0.0  # p1 = p3 = 1/2
    assert expected_digit_score(logits, tokenizer) == pytest.approx(2.0, abs=1e-6)
    after_one = torch.full((len(tokenizer),), -1e4)
    after_one[digit[0]] = 0.0
    after_one[tokenizer.convert_tokens_to_ids("<|im_end|>")] = math.log(3.0)  # q = P("0" | "1") = 1/4
    expected = 0.5 * (1 + 9 * 0.25) + 0.5 * 3
    assert expected_digit_score(logits, tokenizer, after_one) == pytest.approx(expected, abs=1e-6)


def test_auto_processor_loads_the_saved_folder_with_its_image_processor(tiny_folder, tiny):
    """Stock ``AutoProcessor`` (no torchvision here) rebuilds the InternVL frame processor, not just the
    tokenizer, and it encodes a frame prompt exactly as :func:`load_processor`'s processor does."""
    from transformers import AutoProcessor, InternVLProcessor
    from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import GotOcr2ImageProcessorPil

    _, reference = tiny
    loaded = AutoProcessor.from_pretrained(tiny_folder)
    assert isinstance(loaded, InternVLProcessor)
    assert isinstance(loaded.image_processor, GotOcr2ImageProcessorPil)
    assert loaded.image_seq_length == reference.image_seq_length == 4
    text = chat(reference, "<image>\nIs anything unusual happening?")
    ours = reference(text=text, images=[frame(8)], return_tensors="pt")
    theirs = loaded(text=text, images=[frame(8)], return_tensors="pt")
    assert torch.equal(ours["input_ids"], theirs["input_ids"])
    assert torch.equal(ours["pixel_values"], theirs["pixel_values"])


def test_tiny_processor_normalises_with_imagenet_mean_and_std(tiny):
    """InternVL3's preprocessor uses ImageNet's mean/std: a uniform frame of value v becomes
    (v / 255 - mean) / std per channel, after the folder's save and reload."""
    _, processor = tiny
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(processor.image_processor.image_mean, mean)
    np.testing.assert_allclose(processor.image_processor.image_std, std)
    image = np.full((64, 64, 3), 200, dtype=np.uint8)
    pixels = processor(text="<image>", images=[image], return_tensors="pt")["pixel_values"][0]
    expected = (200 / 255 - mean) / std
    np.testing.assert_allclose(pixels.mean(dim=(1, 2)).numpy(), expected, atol=1e-4)


def test_the_frame_processor_runs_the_stock_processors_init(monkeypatch):
    """InternVLFrameProcessor subclasses transformers' InternVLProcessor without skipping its __init__ (only
    the video processor, which needs torchvision, is left out): the stock attributes come from the stock
    code."""
    from transformers import InternVLProcessor

    from dualvad.vlm.processor import InternVLFrameProcessor, build_processor

    calls = []
    stock = InternVLProcessor.__init__
    monkeypatch.setattr(InternVLProcessor, "__init__",
                        lambda self, *args, **kwargs: calls.append(args) or stock(self, *args, **kwargs))
    processor = build_processor(image_size=56, image_seq_length=16)
    assert isinstance(processor, InternVLFrameProcessor) and len(calls) == 1
    assert InternVLFrameProcessor.get_attributes() == ["image_processor", "tokenizer"]
    assert processor.image_seq_length == 16 and processor.image_token == IMAGE_CONTEXT_TOKEN
    assert processor.image_token_ids == [processor.image_token_id, processor.start_image_token_id,
                                         processor.end_image_token_id]
