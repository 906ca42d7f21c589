"""The evaluation protocol's settings (``eval.*``), read by :mod:`dualvad.pipeline.evaluate`."""

from __future__ import annotations

import typing
from dataclasses import field
from typing import Annotated, Literal

from pydantic import Field, field_validator

from dualvad.corpus.layout import SPLITS
from dualvad.validation import config_section, one_of

# "none": the configured sampling strategy; "sampling": focused, uniform and random frames for the same
# model; "benchmarks": the models fine-tuned in other runs (eval.compare); "scorer": the scorer's row alone,
# no VLM (a corpus of feature files without its videos, or a run not fine-tuned)
Ablation = Literal["none", "sampling", "benchmarks", "scorer"]
ABLATIONS: tuple[str, ...] = typing.get_args(Ablation)
SnippetCount = Literal["ceil", "floor_plus_one"]


@config_section(frozen=True)
class VeraSettings:
    """The protocol's constants, the ``eval.vera.*`` config section; the defaults are the reference's."""

    snippet: Annotated[int, Field(ge=1)] = 16  # frames per snippet (the reference's sampling_rate)
    # each snippet refines over int(share x snippets) most similar (0 -> all)
    neighbour_share: Annotated[float, Field(ge=0, le=1)] = 0.15
    similarity_scale: Annotated[float, Field(gt=0)] = 10.0  # softmax over cosine similarity x scale
    kernel: Annotated[int, Field(ge=1)] = 15  # Gaussian taps
    sigma: Annotated[float, Field(gt=0)] = 10.0  # Gaussian sigma, in snippets
    decimals: Annotated[int, Field(ge=0)] = 1  # the smoothed snippet scores are rounded to this many decimals


@config_section
class EvalConfig:
    """Evaluating the fine-tuned VLM (and the scorer as the baseline row) on a split (``test``)."""

    model: str = ""  # "" = RUN/finetune/final; else a folder or hub id
    ablate: Ablation = "none"
    compare: list[str] = field(default_factory=list)  # ablate=benchmarks: "NAME=RUN" (or RUN) per model
    split: str = "test"  # one of the corpus splits
    batch_size: Annotated[int, Field(ge=1)] = 8  # frames per forward pass
    max_new_tokens: Annotated[int, Field(ge=1)] = 24  # generated explanation length, tokens
    thumbnails: Annotated[int, Field(ge=0)] = 3  # top-scoring frames kept per video for the report
    timeline_videos: Annotated[int, Field(ge=0)] = 8  # videos drawn as timelines in the report
    workers: Annotated[int, Field(ge=1)] | None = None  # inference actors; None = up to one per CPU
    cpus_per_worker: Annotated[float, Field(gt=0)] = 1.0
    use_gpu: bool = False  # one GPU per actor, bf16
    vera: VeraSettings = field(default_factory=VeraSettings)
    # the 16-frame protocol (dualvad.eval.snippet_protocol): T of a video without feature files, from its
    # frame count N: "ceil" ceil(N / 16), "floor_plus_one" floor(N / 16) + 1
    snippet_count: SnippetCount = "ceil"
    # a reference repository's ground-truth .npy to score the test videos against, in the order (sorted by
    # video id) and lengths of RUN/eval/gt_16frame_videos.json; "" = the one built as the reference builds it
    snippet_gt_file: str = ""

    @field_validator("split")
    @classmethod
    def _known_split(cls, split: str) -> str:
        return one_of(split, SPLITS)  # the splits are the corpus layout's, not a Literal of this module
