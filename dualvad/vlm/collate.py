"""Benchmark rows to InternVL training batches: chat template, image tokens, answer-only labels.

:func:`encode_example` turns one image- or video-benchmark row (``dualvad.schema``) into tensors whose
``labels`` keep only the assistant's answers (each answer's tokens and the ``<|im_end|>`` that closes
its turn); everything else (role headers, user turns, image tokens, padding) is :data:`IGNORE_INDEX`.
:func:`collate` right-pads a list of encoded rows into one batch (the order rows are visited in is
:func:`dualvad.vlm.mixing.mix_schedule`).

Nothing here imports Ray; the Ray Train loop in ``dualvad.train`` calls these functions.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image

from dualvad.schema import CONVERSATIONS, ROW_ID
from dualvad.video.jpeg import decode_jpegs

IGNORE_INDEX = -100
ROLES = {"human": "user", "gpt": "assistant"}
IMAGE_PLACEHOLDER = "<image>"
ASSISTANT_HEADER = "<|im_start|>assistant\n"
TURN_END = "<|im_end|>"


# ----------------------------------------------------------------------------------------------- encoding


def conversation_to_messages(conversations: Sequence[dict]) -> list[dict]:
    """InternVL turns ``[{"from": "human"|"gpt", "value": str}]`` to chat messages.

    Returns ``[{"role": "user"|"assistant", "content": [{"type": "text", "text": value}]}]``; ``<image>``
    placeholders stay in the text (the processor expands them). Turns must alternate, human first.
    """
    if not conversations:
        raise ValueError("empty conversation: a row needs at least one human and one gpt turn")
    messages = []
    for index, turn in enumerate(conversations):
        speaker = turn["from"]
        if speaker not in ROLES:
            raise ValueError(f"turn {index}: unknown speaker {speaker!r}, expected one of {sorted(ROLES)}")
        expected = "human" if index % 2 == 0 else "gpt"
        if speaker != expected:
            raise ValueError(f"turn {index} is from {speaker!r}, expected {expected!r} (turns alternate)")
        messages.append({"role": ROLES[speaker], "content": [{"type": "text", "text": turn["value"]}]})
    return messages


def decode_images(row: dict) -> list[Image.Image]:
    """The row's frames as RGB PIL images: ``image`` (one JPEG) or ``images`` (JPEGs in time order)."""
    if row.get("image") is not None:
        blobs = [row["image"]]
    elif row.get("images") is not None:
        blobs = list(row["images"])
    else:
        blobs = []
    return decode_jpegs(blobs)


def _row_id(row: dict) -> str:
    return str(row.get(ROW_ID, "<no id>"))


def _find(ids: list[int], pattern: list[int], start: int) -> int:
    """First index >= ``start`` where ``pattern`` occurs in ``ids``, or -1."""
    width = len(pattern)
    for position in range(start, len(ids) - width + 1):
        if ids[position:position + width] == pattern:
            return position
    return -1


def answer_spans(input_ids: list[int], tokenizer) -> list[tuple[int, int]]:
    """``[start, end)`` token spans of each assistant answer, the closing ``<|im_end|>`` included.

    Found by locating the token sequence of ``<|im_start|>assistant\\n`` and the next ``<|im_end|>``;
    the header itself is not in the span.
    """
    header = tokenizer.encode(ASSISTANT_HEADER, add_special_tokens=False)
    end_id = tokenizer.convert_tokens_to_ids(TURN_END)
    spans = []
    position = _find(input_ids, header, 0)
    while position >= 0:
        start = position + len(header)
        try:
            end = input_ids.index(end_id, start) + 1
        except ValueError:
            raise ValueError(f"the assistant turn at token {position} has no closing {TURN_END}") from None
        spans.append((start, end))
        position = _find(input_ids, header, end)
    return spans


def _check_answers(spans, input_ids: list[int], answers: list[str], tokenizer, row_id: str) -> None:
    """Each span must decode to its answer: a template whose header merges with the answer fails here."""
    if len(spans) != len(answers):
        raise ValueError(f"row {row_id}: found {len(spans)} assistant turns in the tokens, "
                         f"the conversation has {len(answers)}")
    for (start, end), answer in zip(spans, answers, strict=True):
        decoded = tokenizer.decode(input_ids[start:end - 1], clean_up_tokenization_spaces=False)
        if decoded != answer:
            raise ValueError(f"row {row_id}: answer tokens decode to {decoded!r}, expected {answer!r}")


def encode_example(row: dict, processor, max_length: int) -> dict:
    """One benchmark row to model inputs with answer-only labels.

    ``row``: an ``IMAGE_BENCH_SCHEMA`` or ``VIDEO_BENCH_SCHEMA`` row (``id``, ``conversations`` and
    ``image`` or ``images``). ``processor``: an ``InternVLFrameProcessor`` (``dualvad.vlm.processor``).

    Returns ``input_ids``, ``attention_mask``, ``labels``: int64 (seq,); ``labels`` is ``input_ids`` with
    every position but the answer tokens and their ``<|im_end|>`` set to -100; ``pixel_values``: float32
    (tiles, 3, S, S), the frames' tiles in order. A row longer than ``max_length`` tokens is an error
    (image tokens are never cut).
    """
    row_id = _row_id(row)
    messages = conversation_to_messages(row[CONVERSATIONS])
    images = decode_images(row)
    text = processor.tokenizer.apply_chat_template(
        messages, chat_template=getattr(processor, "chat_template", None), tokenize=False
    )
    placeholders = text.count(IMAGE_PLACEHOLDER)
    if placeholders != len(images):
        raise ValueError(
            f"row {row_id}: {placeholders} {IMAGE_PLACEHOLDER} placeholders, {len(images)} images"
        )
    inputs = processor(text=text, images=images or None, return_tensors="pt")
    input_ids = inputs["input_ids"][0]
    if input_ids.numel() > max_length:
        raise ValueError(f"row {row_id}: {input_ids.numel()} tokens exceed max_length={max_length} "
                         f"({len(images)} images); raise max_length or use fewer frames/tiles")
    ids = input_ids.tolist()
    spans = answer_spans(ids, processor.tokenizer)
    answers = [turn["value"] for turn in row[CONVERSATIONS] if turn["from"] == "gpt"]
    _check_answers(spans, ids, answers, processor.tokenizer, row_id)
    labels = torch.full_like(input_ids, IGNORE_INDEX)
    for start, end in spans:
        labels[start:end] = input_ids[start:end]
    example = {"input_ids": input_ids, "attention_mask": inputs["attention_mask"][0], "labels": labels}
    if "pixel_values" in inputs:
        example["pixel_values"] = inputs["pixel_values"]
    return example


# ------------------------------------------------------------------------------------------------ batching


def _pad(tensors: list[torch.Tensor], value: int, length: int) -> torch.Tensor:
    """Right-pad 1-D tensors to ``length`` with ``value``: (batch, length), dtype of the inputs."""
    out = torch.full((len(tensors), length), value, dtype=tensors[0].dtype)
    for index, tensor in enumerate(tensors):
        out[index, :tensor.numel()] = tensor
    return out


def collate(examples: list[dict], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Encoded rows (:func:`encode_example`) to one batch, right-padded.

    Returns ``input_ids`` (padded with ``pad_token_id``), ``attention_mask`` (0), ``labels`` (-100): int64
    (batch, max_seq); ``pixel_values``: float32 (total tiles, 3, S, S), every row's tiles in row order
    (absent when no row has images).
    """
    if not examples:
        raise ValueError("collate needs at least one example")
    length = max(example["input_ids"].numel() for example in examples)
    batch = {
        "input_ids": _pad([e["input_ids"] for e in examples], pad_token_id, length),
        "attention_mask": _pad([e["attention_mask"] for e in examples], 0, length),
        "labels": _pad([e["labels"] for e in examples], IGNORE_INDEX, length),
    }
    pixels = [e["pixel_values"] for e in examples if e.get("pixel_values") is not None]
    if pixels:
        batch["pixel_values"] = torch.cat(pixels, dim=0)
    return batch


# ------------------------------------------------------------------------------------------------- mixing
