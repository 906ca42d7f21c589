"""Benchmark rows to training batches: answer-only labels, image tokens, padding, and a tiny model
that learns from the batch; the benchmark mixing schedule exactly."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from dualvad.benchmarks.templates import frame_prefix
from dualvad.vlm.collate import IGNORE_INDEX, collate, conversation_to_messages, encode_example
from dualvad.vlm.loss import answer_loss, predicting_positions
from dualvad.vlm.mixing import draws_per_epoch, interleave, mix_schedule
from dualvad.vlm.model import (
    BOS_TOKEN_ID,
    IMAGE_CONTEXT_TOKEN_ID,
    TINY_IMAGE_SIZE,
    load_model,
    save_tiny_model,
)
from dualvad.vlm.processor import load_processor

S = TINY_IMAGE_SIZE
TOKENS_PER_TILE = 4
MAX_LENGTH = 512


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("tiny_internvl_collate"))


@pytest.fixture(scope="module")
def processor(tiny_folder):
    return load_processor(tiny_folder)


def jpeg(seed: int, size: int = 64) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG")
    return buffer.getvalue()


def turns(*values: str) -> list[dict]:
    return [{"from": "human" if i % 2 == 0 else "gpt", "value": v} for i, v in enumerate(values)]


IMAGE_ROW = {
    "id": "image-row-0",
    "image": jpeg(0),
    "conversations": turns("<image>\nIs there an anomaly in this frame? Answer Yes or No.", "Yes",
                           "What kind of anomaly is it?", "Road Accident"),
}
VIDEO_ROW = {
    "id": "video-row-0",
    "images": [jpeg(1), jpeg(2), jpeg(3)],
    "conversations": turns(f"{frame_prefix(3)}\nWhich frames show an abnormal event?", "Frame2, Frame3",
                           "Rate how abnormal this clip is from 0 to 10.", "7"),
}
ANSWERS = {"image-row-0": ["Yes", "Road Accident"], "video-row-0": ["Frame2, Frame3", "7"]}


def unmasked_text(example: dict, processor) -> str:
    kept = example["labels"] != IGNORE_INDEX
    ids = example["input_ids"][kept].tolist()
    return processor.tokenizer.decode(ids)


def test_conversation_to_messages():
    messages = conversation_to_messages(turns("<image>\nQ?", "A"))
    assert messages == [{"role": "user", "content": [{"type": "text", "text": "<image>\nQ?"}]},
                        {"role": "assistant", "content": [{"type": "text", "text": "A"}]}]
    with pytest.raises(ValueError, match="alternate"):
        conversation_to_messages([{"from": "gpt", "value": "A"}])
    with pytest.raises(ValueError, match="speaker"):
        conversation_to_messages([{"from": "system", "value": "x"}])


@pytest.mark.parametrize("row,frames", [(IMAGE_ROW, 1), (VIDEO_ROW, 3)])
def test_labels_cover_exactly_the_answers(processor, row, frames):
    example = encode_example(row, processor, MAX_LENGTH)
    ids, labels = example["input_ids"], example["labels"]
    assert ids.dtype == labels.dtype == torch.int64
    assert ids.shape == labels.shape == example["attention_mask"].shape
    assert unmasked_text(example, processor) == "".join(f"{a}<|im_end|>" for a in ANSWERS[row["id"]])
    kept = labels != IGNORE_INDEX
    assert torch.equal(labels[kept], ids[kept])
    assert int((ids == IMAGE_CONTEXT_TOKEN_ID).sum()) == frames * TOKENS_PER_TILE
    assert not kept[ids == IMAGE_CONTEXT_TOKEN_ID].any()
    assert example["pixel_values"].shape == (frames, 3, S, S)
    assert example["pixel_values"].dtype == torch.float32


def test_frames_keep_their_order(processor):
    example = encode_example(VIDEO_ROW, processor, MAX_LENGTH)
    rows = [{"id": f"f{i}", "image": blob, "conversations": turns("<image>\nQ?", "A")}
            for i, blob in enumerate(VIDEO_ROW["images"])]
    single = [encode_example(row, processor, MAX_LENGTH)["pixel_values"][0] for row in rows]
    assert torch.equal(example["pixel_values"], torch.stack(single))


def test_too_long_row_is_an_error_naming_row_and_length(processor):
    length = encode_example(VIDEO_ROW, processor, MAX_LENGTH)["input_ids"].numel()
    with pytest.raises(ValueError, match=rf"row video-row-0: {length} tokens exceed max_length=20"):
        encode_example(VIDEO_ROW, processor, 20)


def test_placeholder_count_must_match_images(processor):
    row = {**VIDEO_ROW, "images": VIDEO_ROW["images"][:2]}
    with pytest.raises(ValueError, match="video-row-0: 3 <image> placeholders, 2 images"):
        encode_example(row, processor, MAX_LENGTH)


def test_collate_pads_right(processor):
    examples = [encode_example(row, processor, MAX_LENGTH) for row in (IMAGE_ROW, VIDEO_ROW)]
    short, long = (e["input_ids"].numel() for e in examples)
    assert short < long
    batch = collate(examples, pad_token_id=BOS_TOKEN_ID)
    assert batch["input_ids"].shape == batch["attention_mask"].shape == batch["labels"].shape == (2, long)
    assert torch.equal(batch["input_ids"][0, :short], examples[0]["input_ids"])
    assert (batch["input_ids"][0, short:] == BOS_TOKEN_ID).all()
    assert (batch["attention_mask"][0, short:] == 0).all() and (batch["attention_mask"][0, :short] == 1).all()
    assert (batch["labels"][0, short:] == IGNORE_INDEX).all()
    assert torch.equal(batch["input_ids"][1], examples[1]["input_ids"])
    assert batch["pixel_values"].shape == (4, 3, S, S)
    assert torch.equal(batch["pixel_values"][1:], examples[1]["pixel_values"])
    with pytest.raises(ValueError, match="at least one"):
        collate([], BOS_TOKEN_ID)


def test_tiny_model_learns_the_answers(tiny_folder, processor):
    torch.manual_seed(0)
    model = load_model(tiny_folder).train()
    examples = [encode_example(row, processor, MAX_LENGTH) for row in (IMAGE_ROW, VIDEO_ROW)]
    batch = collate(examples, pad_token_id=BOS_TOKEN_ID)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for step in range(15):
        output = model(**batch)
        assert torch.isfinite(output.loss)
        if step == 0:  # the loss is next-token cross-entropy over the answer tokens only
            logits, targets = output.logits[:, :-1].float(), batch["labels"][:, 1:]
            expected = torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets, ignore_index=-100)
            assert output.loss.item() == pytest.approx(expected.item(), rel=1e-4)
        optimizer.zero_grad()
        output.loss.backward()
        optimizer.step()
        losses.append(output.loss.item())
    print("losses", [round(v, 3) for v in losses])
    assert all(later < earlier for earlier, later in zip(losses, losses[1:], strict=False))
    assert losses[-1] < losses[0] - 1.0



def test_predicting_positions_are_the_union_of_each_rows_answer_predictors():
    labels = torch.tensor([[-100, -100, 5, 6, -100, -100],
                           [-100, -100, -100, -100, 7, -100]])
    assert predicting_positions(labels).tolist() == [1, 2, 3]


def test_answer_loss_equals_the_models_loss_with_the_same_gradients(tiny_folder, processor):
    """The answer-only loss (logits of the answer-predicting positions only) is the model's own loss over
    the full (batch, seq, vocab) logits, and gives the same gradients."""
    model = load_model(tiny_folder).train()
    examples = [encode_example(row, processor, MAX_LENGTH) for row in (IMAGE_ROW, VIDEO_ROW)]
    batch = collate(examples, pad_token_id=BOS_TOKEN_ID)
    gradients = []
    for compute in (lambda: model(**batch).loss, lambda: answer_loss(model, batch)):
        model.zero_grad()
        loss = compute()
        loss.backward()
        gradients.append((loss.item(), [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    (full, full_grads), (answers, answer_grads) = gradients
    assert answers == pytest.approx(full, rel=1e-6)
    assert len(answer_grads) == len(full_grads) > 0
    for mine, reference in zip(answer_grads, full_grads, strict=True):
        torch.testing.assert_close(mine, reference, rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------------------------------------ mix schedule


def test_draws_and_interleave_exact():
    assert draws_per_epoch(10, 1.0) == 10 and draws_per_epoch(10, 0.25) == 3 and draws_per_epoch(3, 0.5) == 2
    assert interleave(2, 1) == [0, 1, 0]
    assert interleave(3, 0) == [0, 0, 0]
    assert interleave(1, 3) == [1, 0, 1, 1]  # a at 0.5 ties b's second (0.5): a first
    with pytest.raises(ValueError, match="weight"):
        draws_per_epoch(3, -1.0)


def test_joint_schedule_exact():
    schedule = mix_schedule(4, 2, curriculum="joint", epochs=1, seed=0)
    assert [b for b, _ in schedule] == ["image", "video", "image", "image", "video", "image"]
    assert sorted(i for b, i in schedule if b == "image") == [0, 1, 2, 3]
    assert sorted(i for b, i in schedule if b == "video") == [0, 1]
    assert schedule == mix_schedule(4, 2, curriculum="joint", epochs=1, seed=0)
    assert schedule != mix_schedule(4, 2, curriculum="joint", epochs=1, seed=1)


def test_weights_repeat_rows_and_epochs_reshuffle():
    schedule = mix_schedule(3, 2, image_weight=1.0, video_weight=2.0, epochs=2, seed=3)
    assert len(schedule) == 2 * (3 + 4)
    videos = [i for b, i in schedule if b == "video"]
    assert len(videos) == 8 and all(videos.count(i) == 4 for i in (0, 1))
    for start in range(0, 8, 2):  # every row once before any row twice
        assert sorted(videos[start:start + 2]) == [0, 1]
    images = [i for b, i in schedule if b == "image"]
    assert sorted(images[:3]) == sorted(images[3:]) == [0, 1, 2]
    assert mix_schedule(3, 2, video_weight=0.0) == mix_schedule(3, 0)
    assert [b for b, _ in mix_schedule(3, 0)] == ["image"] * 3


def test_image_first_schedule_exact():
    schedule = mix_schedule(4, 4, curriculum="image_first", epochs=1, seed=0)
    # T = 8: 4 image-only steps, then 4 steps in the ratio 4:4 -> 2 image, 2 video, interleaved
    assert [b for b, _ in schedule] == ["image"] * 5 + ["video", "image", "video"]
    images = [i for b, i in schedule if b == "image"]
    assert sorted(images[:4]) == [0, 1, 2, 3]  # one full pass before any image repeats
    assert images[:4] == [i for b, i in mix_schedule(4, 4, curriculum="joint") if b == "image"]
    schedule = mix_schedule(6, 2, curriculum="image_first", epochs=2, seed=1)
    # T = 16: 8 image-only steps, then 8 steps in the ratio 6:2 -> 6 image, 2 video
    sides = [b for b, _ in schedule]
    assert sides[:8] == ["image"] * 8 and sides[8:].count("video") == 2
    assert sides[8:] == ["image", "image", "video", "image", "image", "image", "video", "image"]


def test_mix_schedule_errors():
    with pytest.raises(ValueError, match="curriculum"):
        mix_schedule(2, 2, curriculum="video_first")
    with pytest.raises(ValueError, match="epochs"):
        mix_schedule(2, 2, epochs=0)
    with pytest.raises(ValueError, match="nothing to train on"):
        mix_schedule(0, 0)
    with pytest.raises(ValueError, match="image_first"):
        mix_schedule(0, 3, curriculum="image_first")
