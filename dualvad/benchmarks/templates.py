"""Question and answer templates of the two benchmarks, in one place.

Each question has a few paraphrases; which one a row gets is chosen by a seeded generator, so
a benchmark built twice with the same seed is identical. Answers are fixed strings the VLM
scoring reads from logits ("Yes"/"No", a digit 0-10), never free text.
"""

from __future__ import annotations

import zlib

import numpy as np

IMAGE_TOKEN = "<image>"
YES, NO = "Yes", "No"
NONE_ABNORMAL = "None"

ANOMALY_QUESTIONS = (
    "Is there an anomaly in this surveillance frame? Answer Yes or No.",
    "Does this frame from a surveillance camera show any abnormal event? Answer Yes or No.",
    "Is anything unusual or dangerous happening in this image? Answer Yes or No.",
    "Answer Yes or No: does this surveillance image contain an anomalous event?",
)
CATEGORY_QUESTIONS = (
    "What kind of anomaly is it?",
    "Which category of abnormal event does this frame show?",
    "Name the type of anomaly in the frame.",
)
LOCALIZATION_QUESTIONS = (
    "Which frames of this clip show an abnormal event? List them as FrameN, or answer None.",
    "Identify the frames in which something anomalous happens (e.g. Frame2, Frame3), or answer None.",
    "In which of these frames does an anomaly occur? Answer with the frame labels, or None.",
)
SCORE_QUESTIONS = (
    "Rate how abnormal this clip is on a scale from 0 (completely normal) to 10 (clearly abnormal). "
    "Answer with one number.",
    "On a scale of 0 to 10, how anomalous is this video clip? Reply with a single number.",
    "Give an abnormality score for this clip, from 0 (normal) to 10 (highly abnormal).",
)


def row_rng(seed: int, key: str) -> np.random.Generator:
    """The generator for one benchmark row: depends only on the seed and the row's key."""
    return np.random.default_rng([seed, zlib.crc32(key.encode())])


def pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def image_conversation(rng: np.random.Generator, anomalous: bool, category: str | None) -> list[dict]:
    """The image benchmark's turns: yes/no anomaly question, and for anomalous frames the category."""
    turns = [{"from": "human", "value": f"{IMAGE_TOKEN}\n{pick(rng, ANOMALY_QUESTIONS)}"},
             {"from": "gpt", "value": YES if anomalous else NO}]
    if anomalous and category:
        turns += [{"from": "human", "value": pick(rng, CATEGORY_QUESTIONS)},
                  {"from": "gpt", "value": category}]
    return turns


def frame_prefix(count: int) -> str:
    """``Frame1: <image>`` ... one line per frame of a clip, as InternVL's video format shows them."""
    return "\n".join(f"Frame{i + 1}: {IMAGE_TOKEN}" for i in range(count))


def localization_answer(abnormal: list[bool]) -> str:
    """``"Frame2, Frame3"`` for the abnormal positions of a clip, or ``"None"``."""
    names = [f"Frame{i + 1}" for i, flag in enumerate(abnormal) if flag]
    return ", ".join(names) if names else NONE_ABNORMAL


def abnormality_score(abnormal: list[bool]) -> int:
    """0-10 from the share of abnormal frames (round half up: 1 of 8 frames -> 1)."""
    return int(np.floor(10 * sum(abnormal) / len(abnormal) + 0.5))


def video_conversation(rng: np.random.Generator, abnormal: list[bool]) -> list[dict]:
    """The video benchmark's turns: localisation, then the 0-10 abnormality score."""
    return [
        {"from": "human", "value": f"{frame_prefix(len(abnormal))}\n{pick(rng, LOCALIZATION_QUESTIONS)}"},
        {"from": "gpt", "value": localization_answer(abnormal)},
        {"from": "human", "value": pick(rng, SCORE_QUESTIONS)},
        {"from": "gpt", "value": str(abnormality_score(abnormal))},
    ]
