"""The evaluation protocol's settings (``eval.*``), read by :mod:`dualvad.pipeline.evaluate`."""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from typing import Literal

from dualvad.checks import above, at_least, at_most, check_choices, one_of
from dualvad.corpus.layout import SPLITS

# "none": the configured sampling strategy; "sampling": focused, uniform and random frames for the same
# model; "benchmarks": the models fine-tuned in other runs (eval.compare)
Ablation = Literal["none", "sampling", "benchmarks"]
ABLATIONS: tuple[str, ...] = typing.get_args(Ablation)


@dataclass(frozen=True)
class VeraSettings:
    """The protocol's constants, the ``eval.vera.*`` config section; the defaults are the reference's."""

    snippet: int = 16  # frames per snippet (the reference's sampling_rate)
    neighbour_share: float = 0.15  # each snippet refines over int(share x snippets) most similar (0 -> all)
    similarity_scale: float = 10.0  # softmax over cosine similarity x scale
    kernel: int = 15  # Gaussian taps
    sigma: float = 10.0  # Gaussian sigma, in snippets
    decimals: int = 1  # the smoothed snippet scores are rounded to this many decimals

    def __post_init__(self) -> None:
        at_least(self, 1, "snippet", "kernel")
        at_least(self, 0, "neighbour_share", "decimals")
        at_most(self, 1, "neighbour_share")
        above(self, 0, "similarity_scale", "sigma")


@dataclass
class EvalConfig:
    """Evaluating the fine-tuned VLM (and the scorer as the baseline row) on a split (``test``)."""

    model: str = ""  # "" = RUN/finetune/final; else a folder or hub id
    ablate: Ablation = "none"
    compare: list[str] = field(default_factory=list)  # ablate=benchmarks: "NAME=RUN" (or RUN) per model
    split: str = "test"  # one of the corpus splits
    batch_size: int = 8  # frames per forward pass
    max_new_tokens: int = 24  # generated explanation length, tokens
    thumbnails: int = 3  # top-scoring frames kept per video for the report
    timeline_videos: int = 8  # videos drawn as timelines in the report
    workers: int | None = None  # inference actors; None = up to one per CPU
    cpus_per_worker: float = 1.0
    use_gpu: bool = False  # one GPU per actor, bf16
    vera: VeraSettings = field(default_factory=VeraSettings)

    def __post_init__(self) -> None:
        check_choices(self)
        one_of(self, "split", SPLITS)
        at_least(self, 1, "batch_size", "max_new_tokens", "workers")
        at_least(self, 0, "thumbnails", "timeline_videos")
        above(self, 0, "cpus_per_worker")
