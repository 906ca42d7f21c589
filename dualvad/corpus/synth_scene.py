"""The synthetic corpus's scenes and motion (:mod:`dualvad.corpus.synthetic`): a fixed camera's background
with its forbidden zone, and objects that move smoothly at normal speed, bouncing off the frame edges and
off the zone."""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass

import numpy as np

from dualvad.corpus.synth_plan import SynthSpec

_SPEED = (0.08, 0.16)  # normal object speed, frame widths per second
_ZONE_TINT = 0.45  # share of the zone's paint mixed into its ground (its border is the paint itself)


# --------------------------------------------------------------------------- scene


@dataclass(frozen=True)
class Scene:
    width: int
    height: int
    frames: int
    fps: int
    background: np.ndarray  # (H, W, 3) float32, 0..255
    zone: tuple[float, float, float, float]  # forbidden zone x0, y0, x1, y1 in pixels
    zone_paint: tuple[int, int, int]  # RGB of the zone's border and tint, drawn per scene


@dataclass(frozen=True)
class Sprite:
    track: np.ndarray  # (T, 2) float64: centre x, y in pixels per frame
    radius: float  # pixels (half side for squares)
    colour: tuple[int, int, int]  # RGB
    disc: bool


def random_colour(rng: np.random.Generator, low: int, high: int) -> tuple[int, int, int]:
    """A random RGB colour, each channel in `[low, high)`. No colour is kept for anything: the zone's paint,
    the blocks, objects and crowd all draw from the same colours, so that no colour tells a category."""
    r, g, b = (int(c) for c in rng.integers(low, high, 3))
    return r, g, b


def zone_paint(rng: np.random.Generator) -> tuple[int, int, int]:
    """A saturated paint of a random hue (the way restricted areas are painted, in any colour)."""
    hue = rng.uniform(0.0, 1.0)
    r, g, b = colorsys.hsv_to_rgb(hue, rng.uniform(0.7, 0.9), rng.uniform(0.75, 0.9))
    return round(255 * r), round(255 * g), round(255 * b)


def _background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Grass gradient, a horizontal road with lane marks, fixed blocks, static texture."""
    yy = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    grass = np.array([60, 100, 50], np.float32) + rng.uniform(-10, 10, 3).astype(np.float32)
    img = np.broadcast_to(grass + yy * np.array([30, 35, 15], np.float32), (h, w, 3)).copy()
    top = int(h * rng.uniform(0.35, 0.5))
    bottom = top + int(h * rng.uniform(0.18, 0.26))
    img[top:bottom] = rng.uniform(90, 115)
    mid, dash = (top + bottom) // 2, max(4, w // 20)
    for x in range(int(rng.integers(0, dash)), w, 2 * dash):
        img[mid : mid + max(1, h // 80), x : x + dash] = 200.0
    for _ in range(int(rng.integers(2, 5))):
        bw, bh = int(w * rng.uniform(0.06, 0.14)), int(h * rng.uniform(0.06, 0.14))
        x, y = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
        img[y : y + bh, x : x + bw] = random_colour(rng, 40, 170)
    img += rng.normal(0.0, 3.0, (h, w, 1)).astype(np.float32)
    return img


def _zone(rng: np.random.Generator, w: int, h: int) -> tuple[float, float, float, float]:
    """A forbidden zone of about a quarter of the frame, at least 12% away from the edges."""
    zw, zh = w * rng.uniform(0.22, 0.3), h * rng.uniform(0.25, 0.33)
    x0 = rng.uniform(0.12 * w, 0.88 * w - zw)
    y0 = rng.uniform(0.12 * h, 0.88 * h - zh)
    return float(x0), float(y0), float(x0 + zw), float(y0 + zh)


def _draw_zone(img: np.ndarray, zone: tuple[float, float, float, float], paint: tuple[int, int, int]) -> None:
    """Tint the zone with ``paint`` and draw its border in that paint, in place.

    The tint is strong (_ZONE_TINT) the way restricted areas are painted: with a faint one
    the zone's inside looked like the ground around it once frames are downsampled, and an
    intruder inside showed only while crossing the thin border.
    """
    x0, y0, x1, y1 = (round(v) for v in zone)
    border = max(1, round(min(img.shape[:2]) / 60))
    colour = np.array(paint, np.float32)
    img[y0:y1, x0:x1] = (1.0 - _ZONE_TINT) * img[y0:y1, x0:x1] + _ZONE_TINT * colour
    img[y0 : y0 + border, x0:x1] = colour
    img[y1 - border : y1, x0:x1] = colour
    img[y0:y1, x0 : x0 + border] = colour
    img[y0:y1, x1 - border : x1] = colour


def make_scene(rng: np.random.Generator, spec: SynthSpec) -> Scene:
    w, h = spec.width, spec.height
    img = _background(rng, w, h)
    zone = _zone(rng, w, h)
    paint = zone_paint(rng)
    _draw_zone(img, zone, paint)
    return Scene(w, h, spec.num_frames, spec.fps, img, zone, paint)


def in_zone(p: np.ndarray, zone: tuple[float, float, float, float], pad: float) -> bool:
    x0, y0, x1, y1 = zone
    return bool(x0 - pad <= p[0] <= x1 + pad and y0 - pad <= p[1] <= y1 + pad)


# --------------------------------------------------------------------------- motion


def object_speed(rng: np.random.Generator, scene: Scene) -> float:
    """A normal speed in pixels per frame."""
    return rng.uniform(*_SPEED) * scene.width / scene.fps


def unit_vector(angle: float) -> np.ndarray:
    return np.array([math.cos(angle), math.sin(angle)])


def simulate(
    scene: Scene,
    start: np.ndarray,
    heading: float,
    speed: float,
    radius: float,
    frames: int,
    omega: float = 0.0,
    factor: np.ndarray | None = None,
) -> np.ndarray:
    """Track `(frames, 2)` of an object moving at `speed * factor[t]` px/frame, turning
    `omega` rad/frame, bouncing off the frame edges and off the forbidden zone (an object
    that starts inside the zone may leave it)."""
    lo, hi = np.array([radius, radius]), np.array([scene.width - radius, scene.height - radius])
    pos, out = np.asarray(start, float).copy(), np.empty((frames, 2))
    for t in range(frames):
        out[t] = pos
        heading += omega
        nxt = pos + speed * (1.0 if factor is None else factor[t]) * unit_vector(heading)
        if not lo[0] <= nxt[0] <= hi[0]:
            heading = math.pi - heading
        if not lo[1] <= nxt[1] <= hi[1]:
            heading = -heading
        nxt = np.clip(nxt, lo, hi)
        if in_zone(nxt, scene.zone, radius) and not in_zone(pos, scene.zone, radius):
            x0, _, x1, _ = scene.zone
            side_hit = not x0 - radius <= pos[0] <= x1 + radius
            heading = math.pi - heading if side_hit else -heading
            nxt = pos
        pos = nxt
    return out


def _zone_distance(p: np.ndarray, zone: tuple[float, float, float, float]) -> float:
    """Distance in pixels from point `p` to the zone rectangle (0 inside)."""
    x0, y0, x1, y1 = zone
    return float(np.hypot(max(x0 - p[0], 0.0, p[0] - x1), max(y0 - p[1], 0.0, p[1] - y1)))


def free_point(rng: np.random.Generator, scene: Scene, pad: float, inner: float) -> np.ndarray:
    """A point in the central `1 - 2*inner` of the frame, more than `pad` px from the zone
    (the farthest of 64 tries when none is)."""
    w, h = scene.width, scene.height
    xs = rng.uniform(inner * w, (1 - inner) * w, 64)
    ys = rng.uniform(inner * h, (1 - inner) * h, 64)
    points = np.stack([xs, ys], axis=1)
    dist = np.array([_zone_distance(p, scene.zone) for p in points])
    free = np.flatnonzero(dist > pad)
    return points[free[0]] if free.size else points[int(np.argmax(dist))]


def random_look(rng: np.random.Generator, scene: Scene) -> tuple[float, tuple[int, int, int], bool]:
    """Radius (px), colour and shape of a new object."""
    radius = min(scene.width, scene.height) * rng.uniform(0.045, 0.08)
    colour = random_colour(rng, 30, 256)
    return radius, colour, bool(rng.random() < 0.5)


def wanderer(rng: np.random.Generator, scene: Scene, factor: np.ndarray | None = None) -> Sprite:
    """An object moving at normal speed (times `factor[t]`) along a straight or curving path."""
    radius, colour, disc = random_look(rng, scene)
    start = free_point(rng, scene, radius + 2, 0.05)
    omega = 0.0 if rng.random() < 0.5 else rng.uniform(-0.5, 0.5) / scene.fps
    track = simulate(
        scene,
        start,
        rng.uniform(0, 2 * math.pi),
        object_speed(rng, scene),
        radius,
        scene.frames,
        omega,
        factor,
    )
    return Sprite(track, radius, colour, disc)


