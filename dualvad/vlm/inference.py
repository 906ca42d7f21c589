"""Asking a (fine-tuned) InternVL the benchmarks' questions about frames and clips; scores from logits.

The prompts are the benchmarks' own questions (the first paraphrase of each, :mod:`dualvad.benchmarks.
templates`) in the same chat template the model was trained with, so evaluation asks what training taught:

- a frame: ``<image>`` + the yes/no anomaly question -> P("Yes") over {"Yes", "No"} of the first answer token;
- a clip of k frames: ``Frame1: <image>`` ... + the 0-10 abnormality question -> the expected digit value
  (:func:`dualvad.vlm.model.expected_digit_score`, "10" resolved with one extra step); and, for an
  explanation, the same frames + the localisation question, answered by greedy generation in a turn of its
  own (kept as the explanation, never parsed), which the score does not see.

Nothing here imports Ray; the evaluation stage runs :class:`VLMJudge` inside Ray Data actors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from dualvad.benchmarks.templates import (
    ANOMALY_QUESTIONS,
    IMAGE_TOKEN,
    LOCALIZATION_QUESTIONS,
    SCORE_QUESTIONS,
    frame_prefix,
)
from dualvad.vlm.model import expected_digit_score, yes_probability

TURN_END = "<|im_end|>"


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """int64 (batch,): the position of each row's last real token in an ``attention_mask`` (batch, seq) of
    0/1, whatever side the padding is on (each row needs at least one real token)."""
    if not bool(attention_mask.any(dim=1).all()):
        raise ValueError("attention_mask has a row without any real token")
    seq = attention_mask.shape[1]
    # argmax returns the first maximum: on the reversed mask, the first 1 from the right.
    return seq - 1 - attention_mask.flip(dims=[1]).argmax(dim=1)


@dataclass(frozen=True)
class ClipJudgement:
    """The model's answers about one clip."""

    explanation: str  # generated answer to the localisation question
    score: float  # expected abnormality score, in [0, 10]


class VLMJudge:
    """An InternVL model and its processor, answering the benchmark questions.

    ``model``: an ``InternVLForConditionalGeneration`` in eval mode; ``processor``: the matching
    ``InternVLProcessor`` / ``InternVLFrameProcessor``. ``batch_size``: frames per forward pass.
    """

    def __init__(self, model, processor, batch_size: int = 8, max_new_tokens: int = 24) -> None:
        if batch_size < 1 or max_new_tokens < 1:
            raise ValueError(
                f"batch_size and max_new_tokens must be >= 1, got {batch_size} and {max_new_tokens}")
        self.model, self.processor = model, processor
        self.tokenizer = processor.tokenizer
        self.batch_size, self.max_new_tokens = batch_size, max_new_tokens
        self.turn_end_id = self.tokenizer.convert_tokens_to_ids(TURN_END)

    # -------------------------------------------------------------------------------------------- frames

    @torch.inference_mode()
    def frame_scores(self, frames: Sequence[Image.Image]) -> np.ndarray:
        """P("Yes") of the yes/no anomaly question for each frame: float32 (N,) in [0, 1]."""
        prompt = self._prompt([{"role": "user", "text": f"{IMAGE_TOKEN}\n{ANOMALY_QUESTIONS[0]}"}])
        scores = []
        for start in range(0, len(frames), self.batch_size):
            chunk = list(frames[start:start + self.batch_size])
            logits = self._last_logits([prompt] * len(chunk), chunk)
            scores += [yes_probability(row, self.tokenizer) for row in logits]
        return np.asarray(scores, dtype=np.float32)

    # --------------------------------------------------------------------------------------------- clips

    @torch.inference_mode()
    def judge_clip(self, frames: Sequence[Image.Image], explain: bool = True) -> ClipJudgement:
        """Localisation answer (generated) and expected 0-10 abnormality score of one clip.

        The score is read from one prompt whatever ``explain`` says: the frames and the score question in
        the first turn. The explanation (``explain=True``) is a separate turn, the localisation question
        answered by greedy generation, that the score never sees; so ``explain=False`` (explanation ``""``)
        skips only the slow part and changes no score. (The video benchmark asks the score after the
        localisation answer; scoring after a *generated* answer made every score depend on the explanation,
        and ``explain=False`` had to ask another prompt: decisions.md, 2026-12-06, issue 28.)"""
        explanation = ""
        if explain:
            turns = [{"role": "user", "text": f"{frame_prefix(len(frames))}\n{LOCALIZATION_QUESTIONS[0]}"}]
            explanation = self._generate(self._prompt(turns), list(frames))
        question = f"{frame_prefix(len(frames))}\n{SCORE_QUESTIONS[0]}"
        prompt = self._prompt([{"role": "user", "text": question}])
        # One forward pass for both: the prompt, and the prompt with the answer "1" (one token longer).
        logits, after_one = self._last_logits([prompt, prompt + "1"], list(frames) * 2)
        return ClipJudgement(explanation, expected_digit_score(logits, self.tokenizer, after_one))

    # ------------------------------------------------------------------------------------------- helpers

    def _prompt(self, turns: list[dict[str, str]]) -> str:
        """The chat-template text of ``turns`` (``role``, ``text``) followed by the assistant header."""
        messages = [{"role": turn["role"], "content": [{"type": "text", "text": turn["text"]}]}
                    for turn in turns]
        return self.tokenizer.apply_chat_template(
            messages, chat_template=getattr(self.processor, "chat_template", None), tokenize=False,
            add_generation_prompt=True)

    def _inputs(self, prompts: list[str], images: list[Image.Image]) -> dict[str, torch.Tensor]:
        """The processor's tensors on the model's device: ``input_ids``/``attention_mask`` int64 (batch, seq),
        padded to the longest prompt on the tokenizer's side; ``pixel_values`` (tiles, 3, S, S) in the
        model's dtype."""
        inputs = self.processor(text=prompts, images=images, padding=True, return_tensors="pt")
        device, dtype = self.model.device, self.model.dtype
        return {key: value.to(device, dtype=dtype) if key == "pixel_values" else value.to(device)
                for key, value in inputs.items()}

    def _last_logits(self, prompts: list[str], images: list[Image.Image]) -> torch.Tensor:
        """float32 (batch, vocab) on CPU: the next-token logits after each prompt, with the prompts padded
        on either side (``images``: every prompt's frames, in order)."""
        inputs = self._inputs(prompts, images)
        mask = inputs["attention_mask"]
        # Positions count real tokens only, as generate() does, so a left-padded row sees the positions
        # it would see alone.
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
        # Only the last real token's logits are read: project just those positions onto the vocabulary
        # (one when the padding is on the left), not all (batch, seq) of them.
        last = last_token_index(mask)
        kept, column = torch.unique(last, return_inverse=True)
        logits = self.model(**inputs, position_ids=positions, logits_to_keep=kept).logits  # (batch, P, vocab)
        rows = torch.arange(logits.shape[0], device=logits.device)
        return logits[rows, column].float().cpu()

    def _generate(self, prompt: str, images: list[Image.Image]) -> str:
        """Greedy answer to one prompt, up to ``max_new_tokens`` tokens, special tokens removed."""
        inputs = self._inputs([prompt], images)
        output = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False,
                                     eos_token_id=self.turn_end_id,
                                     pad_token_id=self.tokenizer.pad_token_id)
        new_tokens = output[0, inputs["input_ids"].shape[1]:]
        return self.tokenizer.decode(new_tokens, skip_special_tokens=True).strip()
