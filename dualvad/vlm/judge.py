"""The per-video VLM work, one definition for the evaluation stage and the online detector: load a
:class:`~dualvad.vlm.inference.VLMJudge` and ask it about one video's sampled frames.

The frames arrive as RGB images decoded from JPEG (:mod:`dualvad.video.jpeg`), the representation the VLM
was fine-tuned on; the clips are the benchmarks' windows (:func:`dualvad.benchmarks.builder.clip_windows`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from dualvad.benchmarks.builder import clip_windows


@dataclass
class Judgement:
    """The VLM's answers about one video's sampled frames."""

    frame_scores: np.ndarray  # float32 (N,) P("Yes") per sampled frame
    clip_starts: list[int]  # position in the frames of each clip's first frame
    clip_scores: list[float]  # expected 0-10 abnormality score per clip
    explanations: list[str]  # one per clip ("" when explain=False)
    timings_ms: dict[str, float]  # "frames_vlm", "clips_vlm"
    clip_ends: list[int] = field(default_factory=list)  # position in the frames after each clip's last frame


def judge_frames(judge: Any, images: list[Image.Image], clip_frames: int, explain: bool = True,
                 frame_scores: np.ndarray | None = None) -> Judgement:
    """``judge`` (a :class:`dualvad.vlm.inference.VLMJudge`) scores every image (P("Yes"), float32 (N,)) and
    every clip of ``clip_frames`` consecutive images. ``frame_scores``: the images' P("Yes") when already
    computed (serve scores several videos' frames in one pass)."""
    if not images:
        raise ValueError("judge_frames needs at least one frame")
    started = time.perf_counter()
    if frame_scores is None:
        frame_scores = judge.frame_scores(images)
    frame_scores = np.asarray(frame_scores, dtype=np.float32)
    frames_ms = (time.perf_counter() - started) * 1000.0
    started = time.perf_counter()
    windows = clip_windows(len(images), clip_frames)
    clips = [judge.judge_clip([images[i] for i in window], explain=explain) for window in windows]
    timings = {"frames_vlm": frames_ms, "clips_vlm": (time.perf_counter() - started) * 1000.0}
    return Judgement(frame_scores, [w.start for w in windows], [float(c.score) for c in clips],
                     [c.explanation for c in clips], timings, [w.stop for w in windows])


def load_vlm_judge(path: str, device: str = "cpu", batch_size: int = 8, max_new_tokens: int = 24) -> Any:
    """A :class:`dualvad.vlm.inference.VLMJudge` over the InternVL folder (or hub id) ``path``: bfloat16 on
    ``cuda``, as the evaluation stage and serve both run it, else float32."""
    import torch

    from dualvad.vlm.inference import VLMJudge
    from dualvad.vlm.model import load_model
    from dualvad.vlm.processor import load_processor

    dtype = torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    return VLMJudge(load_model(path, dtype=dtype, device=device), load_processor(path), batch_size,
                    max_new_tokens)
