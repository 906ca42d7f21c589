"""The order in which fine-tuning visits the rows of the two benchmarks: joint or image-first curriculum.

Plain Python (NumPy and fractions): the config (``finetune.curriculum``) reads :data:`CURRICULA` from here
without importing torch.
"""

from __future__ import annotations

import typing
from fractions import Fraction
from typing import Literal

import numpy as np

IMAGE = "image"
VIDEO = "video"
Curriculum = Literal["joint", "image_first"]  # both benchmarks mixed, or every image row first
CURRICULA: tuple[str, ...] = typing.get_args(Curriculum)


def draws_per_epoch(rows: int, weight: float) -> int:
    """Rows drawn from one benchmark per epoch: ``round(weight * rows)`` (weight 2 = every row twice)."""
    if rows < 0 or weight < 0:
        raise ValueError(f"rows and weight must be >= 0, got rows={rows}, weight={weight}")
    return int(np.floor(weight * rows + 0.5))


def _stream(rows: int, count: int, seed: int, benchmark: int) -> list[int]:
    """``count`` row indices: consecutive seeded permutations of ``range(rows)``, one per pass."""
    if count > 0 and rows == 0:
        raise ValueError(f"cannot draw {count} rows from an empty benchmark")
    out: list[int] = []
    passes = 0
    while len(out) < count:
        rng = np.random.default_rng([seed, benchmark, passes])
        out.extend(int(i) for i in rng.permutation(rows))
        passes += 1
    return out[:count]


def interleave(count_a: int, count_b: int) -> list[int]:
    """0/1 labels (0 = a) spreading ``count_a`` a's and ``count_b`` b's evenly: item j of a side sits
    at (j + 0.5) / count, ties go to a. ``interleave(2, 1) == [0, 1, 0]``."""
    keys = [(Fraction(2 * j + 1, 2 * count_a), 0) for j in range(count_a)]
    keys += [(Fraction(2 * j + 1, 2 * count_b), 1) for j in range(count_b)]
    return [side for _, side in sorted(keys)]


def mix_schedule(
    n_image: int,
    n_video: int,
    image_weight: float = 1.0,
    video_weight: float = 1.0,
    curriculum: str = "joint",
    epochs: int = 1,
    seed: int = 0,
) -> list[tuple[str, int]]:
    """The order of ``(benchmark, row index)`` pairs to train on (``benchmark`` is "image" or "video").

    An epoch draws ``round(w * n)`` rows from each benchmark (:func:`draws_per_epoch`), so the run has
    ``T = epochs * (d_image + d_video)`` steps. Each benchmark's rows come from consecutive seeded
    permutations (every row once before any row twice).

    - ``"joint"``: the T steps interleave the benchmarks evenly in the ratio d_image : d_video
      (:func:`interleave`); exactly ``epochs * d`` draws from each.
    - ``"image_first"``: the first ``T // 2`` steps are image rows only; the remaining ``L = T - T // 2``
      steps interleave both in the ratio d_image : d_video (``round(L * d_image / (d_image + d_video))``
      image draws, half up), so the run sees about half as many video draws as a joint one.

    Pure and deterministic in its arguments.
    """
    if curriculum not in CURRICULA:
        raise ValueError(f"curriculum must be one of {CURRICULA}, got {curriculum!r}")
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    d_image, d_video = draws_per_epoch(n_image, image_weight), draws_per_epoch(n_video, video_weight)
    total = epochs * (d_image + d_video)
    if total == 0:
        raise ValueError(f"nothing to train on: {n_image} image rows x {image_weight}, "
                         f"{n_video} video rows x {video_weight}")
    if curriculum == "image_first" and d_image == 0:
        raise ValueError("curriculum 'image_first' needs image rows (n_image * image_weight rounds to 0)")
    if curriculum == "joint":
        sides = interleave(epochs * d_image, epochs * d_video)
    else:
        first = total // 2
        rest = total - first
        rest_image = int(Fraction(rest * d_image, d_image + d_video) + Fraction(1, 2))  # round half up
        sides = [0] * first + interleave(rest_image, rest - rest_image)
    image_rows = iter(_stream(n_image, sides.count(0), seed, 0))
    video_rows = iter(_stream(n_video, sides.count(1), seed, 1))
    return [(IMAGE, next(image_rows)) if side == 0 else (VIDEO, next(video_rows)) for side in sides]
