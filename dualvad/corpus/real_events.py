"""The events the real-footage corpus (:mod:`dualvad.corpus.real_footage`) injects into real clips.

Each injector takes a video's frames and changes exactly the frames of its event ``[start, end)``, in
place; every other frame stays as the source has it. Frames are uint8 RGB arrays of shape (T, H, W, 3).
Every random choice is drawn from the ``rng`` passed in, so the same generator state gives the same
pixels. None of these kinds is one the synthetic generator draws, and none depends on a colour of its own:

- ``Pasted``: a patch of real footage (a moving part of the clip at another time and place, with its own
  motion) composited, with feathered edges, onto the stillest region of the video, appearing there or
  sliding across it;
- ``LensCover``: the frame fades (over 0-8 frames) or cuts to a nearly uniform dark grey with a faint
  vertical gradient, as a hand or a cloth over the lens;
- ``Defocus``: a Gaussian blur of the whole frame (sigma 2-3.5 pixels);
- ``SceneCut``: the frames are replaced by consecutive frames of another clip (``foreign``);
- ``FrozenFrame``: the frame before the event is repeated for the whole event (a stalled camera);
- ``Flash``: a short, sudden global brightening that decays to half its strength by the event's end.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from dualvad.corpus.layout import REAL_FOOTAGE_CATEGORIES

KINDS = REAL_FOOTAGE_CATEGORIES  # defined in layout: every corpus reader knows them
PASTED, LENS_COVER, DEFOCUS, SCENE_CUT, FROZEN_FRAME, FLASH = KINDS
"""The injected kinds, each the category label of its videos."""

_FEATHER = 4  # pixels over which a pasted patch's edge fades in, so it has no hard seam


@dataclass(frozen=True)
class Event:
    """One injected event: ``kind`` over the half-open frame range ``[start, end)`` of its video."""

    kind: str
    start: int
    end: int


@dataclass(frozen=True)
class Material:
    """Footage an injector may take frames from, at the working resolution of the video's clip.

    Attributes:
        clip: uint8 (N, Hc, Wc, 3), the video's own source clip (patches for ``Pasted``).
        foreign: uint8 (end - start, H, W, 3), the frames of another clip a ``SceneCut`` shows, at the
            video's frame size (empty for the other kinds).
    """

    clip: np.ndarray
    foreign: np.ndarray


def inject(frames: np.ndarray, event: Event, material: Material, rng: np.random.Generator) -> None:
    """Apply ``event`` to ``frames`` (uint8 (T, H, W, 3)) in place: only frames ``[start, end)`` change."""
    if not 1 <= event.start < event.end <= len(frames):
        raise ValueError(f"event {event} does not fit a video of {len(frames)} frames (start >= 1: a "
                         "frozen frame repeats the frame before it)")
    _INJECTORS[event.kind](frames, event, material, rng)


def _as_uint8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def _grey(frames: np.ndarray) -> np.ndarray:
    """float32 (T, H, W) luma-like mean of the channels."""
    return frames.astype(np.float32).mean(axis=-1)


def _box_sums(values: np.ndarray, height: int, width: int) -> np.ndarray:
    """Sums of ``values`` (H, W) over every ``height`` x ``width`` box: (H - height + 1, W - width + 1),
    indexed by the box's top-left corner (an integral image)."""
    integral = np.pad(values, ((1, 0), (1, 0))).cumsum(axis=0).cumsum(axis=1)
    return (integral[height:, width:] - integral[:-height, width:]
            - integral[height:, :-width] + integral[:-height, :-width])


def _corner(activity: np.ndarray, height: int, width: int,
            pick: Callable[[np.ndarray], int]) -> tuple[int, int]:
    """Top-left (y, x) of the ``height`` x ``width`` box whose summed ``activity`` ``pick`` (argmin or
    argmax) chooses."""
    sums = _box_sums(activity, height, width)
    y, x = np.unravel_index(pick(sums), sums.shape)
    return int(y), int(x)


def _feather_mask(height: int, width: int) -> np.ndarray:
    """float32 (height, width, 1) alpha: 1 inside, falling linearly to 1 / (_FEATHER + 1) at the edge."""
    def ramp(n: int) -> np.ndarray:
        distance = np.minimum(np.arange(n), np.arange(n)[::-1]) + 1
        return np.minimum(distance / (_FEATHER + 1), 1.0)

    return (ramp(height)[:, None] * ramp(width)[None, :])[..., None].astype(np.float32)


def _paste(frames: np.ndarray, event: Event, material: Material, rng: np.random.Generator) -> None:
    length, (_, height, width, _) = event.end - event.start, frames.shape
    ph, pw = int(rng.integers(height // 4, height // 3 + 1)), int(rng.integers(width // 4, width // 3 + 1))
    clip = material.clip
    # the patch: the most moving box of a random stretch of the clip, so it carries motion of its own
    first = int(rng.integers(0, len(clip) - length + 1))
    stretch = clip[first:first + length]
    sy, sx = _corner(_grey(stretch).std(axis=0), ph, pw, np.argmax)
    patch = stretch[:, sy:sy + ph, sx:sx + pw].astype(np.float32)
    # where it goes: the stillest box of this video, so it is seen where nothing else moves
    y0, x0 = _corner(_grey(frames).std(axis=0), ph, pw, np.argmin)
    moving = bool(rng.integers(0, 2))
    y1 = int(rng.integers(0, height - ph + 1)) if moving else y0
    x1 = int(rng.integers(0, width - pw + 1)) if moving else x0
    alpha = _feather_mask(ph, pw)
    for i in range(length):
        share = i / max(length - 1, 1)
        y, x = round(y0 + (y1 - y0) * share), round(x0 + (x1 - x0) * share)
        box = frames[event.start + i, y:y + ph, x:x + pw].astype(np.float32)
        frames[event.start + i, y:y + ph, x:x + pw] = _as_uint8(alpha * patch[i] + (1 - alpha) * box)


def _ramp(length: int, frames_to_full: int) -> np.ndarray:
    """float32 (length,) weights rising as (i + 1) / (frames_to_full + 1) to 1: every frame gets some."""
    return np.minimum((np.arange(length) + 1) / (frames_to_full + 1), 1.0).astype(np.float32)


def _lens_cover(frames: np.ndarray, event: Event, material: Material, rng: np.random.Generator) -> None:
    _, height, width, _ = frames.shape
    level = float(rng.uniform(15, 60))
    gradient = np.linspace(-8, 8, height, dtype=np.float32)[:, None, None] * float(rng.choice([-1, 1]))
    cover = np.broadcast_to(level + gradient, (height, width, 3))
    residual = 0.08  # a covered lens still lets a trace of the scene through
    weights = _ramp(event.end - event.start, int(rng.integers(0, 9)))
    for weight, index in zip(weights, range(event.start, event.end), strict=True):
        frame = frames[index].astype(np.float32)
        target = residual * frame + (1 - residual) * cover
        frames[index] = _as_uint8((1 - weight) * frame + weight * target)


def gaussian_blur(frames: np.ndarray, sigma: float) -> np.ndarray:
    """float32 (..., H, W, C) ``frames`` blurred by a separable Gaussian of ``sigma`` pixels (taps to
    3 sigma, edges reflected)."""
    radius = max(1, int(np.ceil(3 * sigma)))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps = (taps / taps.sum()).astype(np.float32)
    out = frames.astype(np.float32)
    for axis in (-3, -2):  # rows, then columns
        pad = [(0, 0)] * out.ndim
        pad[axis] = (radius, radius)
        padded = np.pad(out, pad, mode="reflect")
        size = out.shape[axis]
        out = sum(tap * np.take(padded, np.arange(k, k + size), axis=axis) for k, tap in enumerate(taps))
    return out


def _defocus(frames: np.ndarray, event: Event, material: Material, rng: np.random.Generator) -> None:
    sigma = float(rng.uniform(2.0, 3.5))
    frames[event.start:event.end] = _as_uint8(gaussian_blur(frames[event.start:event.end], sigma))


def _scene_cut(frames: np.ndarray, event: Event, material: Material, rng: np.random.Generator) -> None:
    if material.foreign.shape != frames[event.start:event.end].shape:
        raise ValueError(f"a scene cut over frames {event.start}..{event.end - 1} of {frames.shape[1:3]} "
                         f"pixels needs as many foreign frames of that size, got {material.foreign.shape}")
    frames[event.start:event.end] = material.foreign


def _frozen_frame(frames: np.ndarray, event: Event, material: Material, rng: np.random.Generator) -> None:
    frames[event.start:event.end] = frames[event.start - 1]


def _flash(frames: np.ndarray, event: Event, material: Material, rng: np.random.Generator) -> None:
    strength = float(rng.uniform(0.4, 0.7))  # share of the way to white at the flash's first frame
    shares = strength * np.linspace(1.0, 0.5, event.end - event.start, dtype=np.float32)
    part = frames[event.start:event.end].astype(np.float32)
    frames[event.start:event.end] = _as_uint8(part + (255 - part) * shares[:, None, None, None])


_INJECTORS: dict[str, Callable[[np.ndarray, Event, Material, np.random.Generator], None]] = {
    PASTED: _paste, LENS_COVER: _lens_cover, DEFOCUS: _defocus, SCENE_CUT: _scene_cut,
    FROZEN_FRAME: _frozen_frame, FLASH: _flash,
}
