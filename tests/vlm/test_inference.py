"""Asking the tiny InternVL the benchmark questions: prompts as in training, batching, score ranges."""

import numpy as np
import pytest
import torch
from PIL import Image

from dualvad.benchmarks.templates import ANOMALY_QUESTIONS, image_conversation
from dualvad.vlm.collate import conversation_to_messages
from dualvad.vlm.inference import VLMJudge, last_token_index
from dualvad.vlm.judge import judge_frames
from dualvad.vlm.model import load_model, save_tiny_model, yes_probability
from dualvad.vlm.processor import load_processor


@pytest.fixture(scope="module")
def judge(tmp_path_factory) -> VLMJudge:
    folder = save_tiny_model(tmp_path_factory.mktemp("tiny"))
    return VLMJudge(load_model(folder), load_processor(folder), batch_size=3, max_new_tokens=6)


def _frames(count: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)) for _ in range(count)]


def test_frame_prompt_is_the_training_text_up_to_the_answer(judge):
    prompt = judge._prompt([{"role": "user", "text": f"<image>\n{ANOMALY_QUESTIONS[0]}"}])
    row = image_conversation(np.random.default_rng(0), anomalous=False, category=None)
    row[0]["value"] = f"<image>\n{ANOMALY_QUESTIONS[0]}"
    training = judge.tokenizer.apply_chat_template(
        conversation_to_messages(row), chat_template=judge.processor.chat_template, tokenize=False)
    assert training.startswith(prompt) and training[len(prompt):].startswith("No")


def test_batched_frame_scores_equal_one_at_a_time_and_the_direct_computation(judge):
    frames = _frames(5)
    batched = judge.frame_scores(frames)  # batches of 3 and 2
    single = np.concatenate([judge.frame_scores([frame]) for frame in frames])
    np.testing.assert_allclose(batched, single, atol=1e-5)
    assert batched.dtype == np.float32 and ((batched > 0) & (batched < 1)).all()
    prompt = judge._prompt([{"role": "user", "text": f"<image>\n{ANOMALY_QUESTIONS[0]}"}])
    inputs = judge.processor(text=prompt, images=[frames[0]], return_tensors="pt")
    with torch.inference_mode():
        logits = judge.model(**inputs).logits[0, -1]
    assert batched[0] == pytest.approx(yes_probability(logits, judge.tokenizer), abs=1e-5)


def test_last_token_index_for_left_right_and_no_padding():
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [0, 1, 0, 0, 0]])
    assert last_token_index(mask).tolist() == [4, 2, 4, 1]
    with pytest.raises(ValueError, match="without any real token"):
        last_token_index(torch.tensor([[1, 1], [0, 0]]))


@pytest.mark.parametrize("side", ["left", "right"])
def test_prompts_of_different_lengths_in_one_batch_read_their_own_last_token(judge, side):
    """A short and a long prompt in one padded batch (left padding is the processor's own): each row's
    next-token logits equal those of the prompt run alone."""
    question = f"<image>\n{ANOMALY_QUESTIONS[0]}"
    prompts = [judge._prompt([{"role": "user", "text": question}]),
               judge._prompt([{"role": "user", "text": f"{question} Look at the people and the objects "
                                                        "near the door and at the far end of the street."}])]
    frames = _frames(2, seed=3)
    padding_side = judge.tokenizer.padding_side
    judge.tokenizer.padding_side = side
    try:
        batched = judge._last_logits(prompts, frames)
        lengths = judge.processor(text=prompts, images=frames, padding=True)["attention_mask"]
        assert lengths[0][0 if side == "left" else -1] == 0  # the short prompt is padded on that side
        alone = torch.cat([judge._last_logits([prompt], [image])
                           for prompt, image in zip(prompts, frames, strict=True)])
    finally:
        judge.tokenizer.padding_side = padding_side
    torch.testing.assert_close(batched, alone, atol=1e-4, rtol=1e-4)


def test_clip_judgement_generates_text_and_scores_within_0_to_10(judge):
    judgement = judge.judge_clip(_frames(4, seed=1))
    assert isinstance(judgement.explanation, str)
    assert 0.0 <= judgement.score <= 10.0


def test_the_explanation_never_changes_a_score(judge):
    frames = _frames(8, seed=2)
    explained = judge_frames(judge, frames, clip_frames=4, explain=True)
    plain = judge_frames(judge, frames, clip_frames=4, explain=False)
    assert plain.explanations == ["", ""] and all(isinstance(text, str) for text in explained.explanations)
    assert explained.clip_scores == plain.clip_scores  # bit for bit: the same prompt, the same pass
    np.testing.assert_array_equal(explained.frame_scores, plain.frame_scores)


def test_bad_settings_are_errors(judge):
    with pytest.raises(ValueError, match="batch_size"):
        VLMJudge(judge.model, judge.processor, batch_size=0)
