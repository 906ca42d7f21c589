"""A synthetic surveillance corpus: real H.264 mp4 files with known anomalous frame ranges.

Each video is a fixed camera over a textured scene (grass, a road with lane marks, a few
fixed blocks, and a red-tinted, red-bordered forbidden zone drawn in every video). By default
every video has a scene of its own; with `cameras = C` the videos are clips of C fixed cameras,
each video's camera drawn at random (so a camera holds normal and anomalous clips alike), 3-6
objects moving smoothly at normal speed (straight or gently curving, bouncing off the frame
edges and off the forbidden zone) and, in about half the videos, a slowly milling crowd of
small dots.
Anomalous videos hold one event in a seeded frame range `[start, end)` covering 20-45% of
the video:

- Speeding: one object moves 5-8x faster than normal during the event.
- Collision: two objects converge at normal speed, meet at the event start, and both stand
  still until its end.
- Explosion: a white-yellow disc expands while the whole frame brightens, then decays.
- Intrusion: an object drives into the forbidden zone at the event start and leaves it at
  the event end.
- Scattering: a crowd of 10-20 dots flies apart radially, at constant speed from the event
  start until it stops at the event end.

Everything is drawn with NumPy and encoded with PyAV's bundled libx264 (one thread, so the
same `SynthSpec` gives byte-identical files on any machine).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from dualvad.corpus.layout import (
    ANNOTATIONS_DIR,
    NORMAL_LABEL,
    SYNTHETIC_CATEGORIES,
    TEMPORAL_FILE,
    TEST_LIST,
    TRAIN_LIST,
    VIDEOS_DIR,
    Interval,
    VideoRecord,
)
from dualvad.corpus.readers import read_corpus
from dualvad.files import write_atomic

CATEGORIES = SYNTHETIC_CATEGORIES  # defined in layout: every corpus reader knows them

_EVENT_SHARE = (0.2, 0.45)  # event length as a share of the video
_SPEED = (0.08, 0.16)  # normal object speed, frame widths per second
_SPEEDING = (5.0, 8.0)  # speed factor of the speeding object
_CROWD_IN_NORMAL = 0.5  # probability of a milling crowd in a video without a Scattering event
_ZONE_TINT = 0.45  # share of red mixed into the forbidden zone's ground (its border is pure red)
_MAX_REDNESS = 40  # r - max(g, b) of any other colour drawn (blocks, objects, crowd)


@dataclass(frozen=True)
class SynthSpec:
    """What to generate.

    Attributes:
        videos: number of videos.
        seed: seed of every random choice; the same spec gives byte-identical files.
        width, height: frame size in pixels (even numbers: H.264 yuv420p).
        fps: frames per second.
        seconds: duration of every video; each has `round(fps * seconds)` frames.
        anomaly_share: share of anomalous videos (categories round-robin over CATEGORIES).
        test_share: share of each label's videos put in the test split (rounded up, so the
            first video of every category is a test video when `test_share >= 0.5`).
        cameras: 0 gives every video a scene of its own; C >= 1 draws each video's scene from C
            fixed cameras. With a scene per video, a model that sees few videos can tell the
            anomalous training videos apart by their scenery alone; clips of shared cameras differ
            only in what happens in them, as in a real surveillance archive.
    """

    videos: int = 16
    seed: int = 0
    width: int = 160
    height: int = 120
    fps: int = 15
    seconds: float = 4.0
    anomaly_share: float = 0.5
    test_share: float = 0.5
    cameras: int = 0

    def __post_init__(self) -> None:
        problems = []
        if self.videos < 1:
            problems.append(f"videos={self.videos} must be >= 1")
        if self.width < 32 or self.height < 32 or self.width % 2 or self.height % 2:
            problems.append(f"width x height = {self.width} x {self.height} must be even, >= 32")
        if self.fps < 1:
            problems.append(f"fps={self.fps} must be >= 1")
        if self.cameras < 0:
            problems.append(f"cameras={self.cameras} must be >= 0 (0: a scene per video)")
        if self.num_frames < 10:
            problems.append(f"fps * seconds = {self.fps * self.seconds:g} must be >= 10 frames")
        for name in ("anomaly_share", "test_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                problems.append(f"{name}={getattr(self, name)} must be in [0, 1]")
        if problems:
            raise ValueError("SynthSpec: " + "; ".join(problems))

    @property
    def num_frames(self) -> int:
        """Frames per video: `round(fps * seconds)`."""
        return round(self.fps * self.seconds)


@dataclass(frozen=True)
class VideoPlan:
    """One video to generate: its id, label, split and event frame range."""

    index: int
    video_id: str
    label: str
    split: str
    event: Interval | None  # half-open [start, end) frames; None for Normal videos


# --------------------------------------------------------------------------- planning


def _takes(i: int, share: float, up: bool) -> bool:
    """Spread `share` of a sequence evenly: True for item `i` when it crosses a step."""
    step = math.ceil if up else math.floor
    return step((i + 1) * share - 1e-9) > step(i * share - 1e-9)


def _event(rng: np.random.Generator, frames: int) -> Interval:
    """A seeded event range `[start, end)` of 20-45% of `frames`, away from the ends."""
    length = max(2, round(frames * rng.uniform(*_EVENT_SHARE)))
    margin = max(1, round(0.05 * frames))
    start = int(rng.integers(margin, max(margin, frames - length - margin) + 1))
    return start, min(frames, start + length)


def plan_corpus(spec: SynthSpec) -> list[VideoPlan]:
    """Labels, splits, ids and event ranges of every video of `spec` (no rendering)."""
    plans, seen = [], {}
    anomalies = 0
    for index in range(spec.videos):
        label = NORMAL_LABEL
        if _takes(index, spec.anomaly_share, up=False):
            label = CATEGORIES[anomalies % len(CATEGORIES)]
            anomalies += 1
        occurrence = seen.get(label, 0)
        seen[label] = occurrence + 1
        split = "test" if _takes(occurrence, spec.test_share, up=True) else "train"
        rng = np.random.default_rng([spec.seed, index, 0])
        event = None if label == NORMAL_LABEL else _event(rng, spec.num_frames)
        video_id = f"{label}/{label.lower()}_{index:04d}.mp4"
        plans.append(VideoPlan(index, video_id, label, split, event))
    return plans


# --------------------------------------------------------------------------- scene


@dataclass(frozen=True)
class _Scene:
    width: int
    height: int
    frames: int
    fps: int
    background: np.ndarray  # (H, W, 3) float32, 0..255
    zone: tuple[float, float, float, float]  # forbidden zone x0, y0, x1, y1 in pixels


@dataclass(frozen=True)
class _Sprite:
    track: np.ndarray  # (T, 2) float64: centre x, y in pixels per frame
    radius: float  # pixels (half side for squares)
    colour: tuple[int, int, int]  # RGB
    disc: bool


def _colour(rng: np.random.Generator, low: int, high: int) -> tuple[int, int, int]:
    """A random RGB colour in `[low, high)` that is not zone red (red is kept for the zone).

    Redness `r - max(g, b)` stays below _MAX_REDNESS, under that of the zone's tinted ground
    (about 60-90), so that a crimson block or object never looks like part of the zone.
    """
    while True:
        r, g, b = (int(c) for c in rng.integers(low, high, 3))
        if r - max(g, b) < _MAX_REDNESS:
            return r, g, b


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
        img[y : y + bh, x : x + bw] = _colour(rng, 40, 170)
    img += rng.normal(0.0, 3.0, (h, w, 1)).astype(np.float32)
    return img


def _zone(rng: np.random.Generator, w: int, h: int) -> tuple[float, float, float, float]:
    """A forbidden zone of about a quarter of the frame, at least 12% away from the edges."""
    zw, zh = w * rng.uniform(0.22, 0.3), h * rng.uniform(0.25, 0.33)
    x0 = rng.uniform(0.12 * w, 0.88 * w - zw)
    y0 = rng.uniform(0.12 * h, 0.88 * h - zh)
    return float(x0), float(y0), float(x0 + zw), float(y0 + zh)


def _draw_zone(img: np.ndarray, zone: tuple[float, float, float, float]) -> None:
    """Tint the zone red and draw its red border in place.

    The tint is strong (_ZONE_TINT) the way restricted areas are painted: with a faint one
    the zone's inside looked like the ground around it once frames are downsampled, and an
    intruder inside showed only while crossing the thin border.
    """
    x0, y0, x1, y1 = (round(v) for v in zone)
    border = max(1, round(min(img.shape[:2]) / 60))
    red = np.array([220, 30, 30], np.float32)
    img[y0:y1, x0:x1] = (1.0 - _ZONE_TINT) * img[y0:y1, x0:x1] + _ZONE_TINT * red
    img[y0 : y0 + border, x0:x1] = red
    img[y1 - border : y1, x0:x1] = red
    img[y0:y1, x0 : x0 + border] = red
    img[y0:y1, x1 - border : x1] = red


def _make_scene(rng: np.random.Generator, spec: SynthSpec) -> _Scene:
    w, h = spec.width, spec.height
    img = _background(rng, w, h)
    zone = _zone(rng, w, h)
    _draw_zone(img, zone)
    return _Scene(w, h, spec.num_frames, spec.fps, img, zone)


def _in_zone(p: np.ndarray, zone: tuple[float, float, float, float], pad: float) -> bool:
    x0, y0, x1, y1 = zone
    return bool(x0 - pad <= p[0] <= x1 + pad and y0 - pad <= p[1] <= y1 + pad)


# --------------------------------------------------------------------------- motion


def _speed(rng: np.random.Generator, scene: _Scene) -> float:
    """A normal speed in pixels per frame."""
    return rng.uniform(*_SPEED) * scene.width / scene.fps


def _unit(angle: float) -> np.ndarray:
    return np.array([math.cos(angle), math.sin(angle)])


def _simulate(
    scene: _Scene,
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
        nxt = pos + speed * (1.0 if factor is None else factor[t]) * _unit(heading)
        if not lo[0] <= nxt[0] <= hi[0]:
            heading = math.pi - heading
        if not lo[1] <= nxt[1] <= hi[1]:
            heading = -heading
        nxt = np.clip(nxt, lo, hi)
        if _in_zone(nxt, scene.zone, radius) and not _in_zone(pos, scene.zone, radius):
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


def _free_point(rng: np.random.Generator, scene: _Scene, pad: float, inner: float) -> np.ndarray:
    """A point in the central `1 - 2*inner` of the frame, more than `pad` px from the zone
    (the farthest of 64 tries when none is)."""
    w, h = scene.width, scene.height
    xs = rng.uniform(inner * w, (1 - inner) * w, 64)
    ys = rng.uniform(inner * h, (1 - inner) * h, 64)
    points = np.stack([xs, ys], axis=1)
    dist = np.array([_zone_distance(p, scene.zone) for p in points])
    free = np.flatnonzero(dist > pad)
    return points[free[0]] if free.size else points[int(np.argmax(dist))]


def _look(rng: np.random.Generator, scene: _Scene) -> tuple[float, tuple[int, int, int], bool]:
    """Radius (px), colour and shape of a new object."""
    radius = min(scene.width, scene.height) * rng.uniform(0.045, 0.08)
    colour = _colour(rng, 30, 256)
    return radius, colour, bool(rng.random() < 0.5)


def _wanderer(rng: np.random.Generator, scene: _Scene, factor: np.ndarray | None = None) -> _Sprite:
    """An object moving at normal speed (times `factor[t]`) along a straight or curving path."""
    radius, colour, disc = _look(rng, scene)
    start = _free_point(rng, scene, radius + 2, 0.05)
    omega = 0.0 if rng.random() < 0.5 else rng.uniform(-0.5, 0.5) / scene.fps
    track = _simulate(
        scene,
        start,
        rng.uniform(0, 2 * math.pi),
        _speed(rng, scene),
        radius,
        scene.frames,
        omega,
        factor,
    )
    return _Sprite(track, radius, colour, disc)


# --------------------------------------------------------------------------- events


def _speeding(rng: np.random.Generator, scene: _Scene, event: Interval) -> list[_Sprite]:
    factor = np.ones(scene.frames)
    factor[event[0] : event[1]] = rng.uniform(*_SPEEDING)
    return [_wanderer(rng, scene, factor)]


def _approach(stop: np.ndarray, direction: np.ndarray, speed: float, until: int) -> np.ndarray:
    """Track `(until, 2)` of a straight approach that reaches `stop` at frame `until`."""
    steps = until - np.arange(until, dtype=float)
    return stop[None, :] - direction[None, :] * speed * steps[:, None]


def _collision_pair(rng: np.random.Generator, scene: _Scene, event: Interval) -> list[_Sprite]:
    """Two objects approach a meeting point at normal speed, crash (overlap) at the event start,
    stand still until its end, then drive off."""
    t0, t1 = event
    looks = [_look(rng, scene) for _ in range(2)]
    speeds = [_speed(rng, scene) for _ in range(2)]
    for _ in range(50):
        meet = _free_point(rng, scene, 0.1 * scene.width, 0.2)
        angle = rng.uniform(0, 2 * math.pi)
        dirs = [_unit(angle), _unit(angle + math.pi + rng.uniform(-0.8, 0.8))]
        stops = [meet - d * 0.8 * look[0] for d, look in zip(dirs, looks, strict=True)]
        pre = [_approach(s, d, v, t0) for s, d, v in zip(stops, dirs, speeds, strict=True)]
        if not any(_in_zone(p, scene.zone, looks[0][0]) for track in pre for p in track):
            break
    sprites = []
    for (radius, colour, disc), stop, d, v, before in zip(
        looks, stops, dirs, speeds, pre, strict=True
    ):
        heading = math.atan2(-d[1], -d[0]) + rng.uniform(-1.0, 1.0)
        after = _simulate(scene, stop, heading, v, radius, scene.frames - t1)
        track = np.concatenate([before, np.repeat(stop[None, :], t1 - t0, axis=0), after])
        sprites.append(_Sprite(track, radius, colour, disc))
    return sprites


def _intruder(rng: np.random.Generator, scene: _Scene, event: Interval) -> list[_Sprite]:
    """An object reaches a side of the zone at the event start, drives in, turns, and is back
    on that side at the event end, then leaves."""
    t0, t1 = event
    radius, colour, disc = _look(rng, scene)
    speed = _speed(rng, scene)
    x0, y0, x1, y1 = scene.zone
    side = int(rng.integers(4))  # left, right, top, bottom
    inward = [np.array([1.0, 0]), np.array([-1.0, 0]), np.array([0, 1.0]), np.array([0, -1.0])][
        side
    ]
    along = np.abs(inward[::-1])
    lo, hi = (np.array([x0, y0]), np.array([x1, y1]))
    entry = np.where(
        inward > 0, lo, np.where(inward < 0, hi, lo + (hi - lo) * rng.uniform(0.2, 0.8))
    )
    extent = float(np.dot(hi - lo, np.abs(inward)))
    # in and back out at up to twice the normal speed, at least half-way when that allows
    depth = min(0.7 * extent, max(speed * (t1 - t0) / 2, min(0.5 * extent, speed * (t1 - t0))))
    lateral = along * rng.uniform(-0.25, 0.25) * float(np.dot(hi - lo, along))
    turn = np.clip(entry + inward * depth + lateral, lo, hi)
    leave = np.clip(entry + 2 * lateral, lo, hi)
    half = (t1 - t0) // 2
    inside = np.concatenate(
        [
            np.linspace(entry, turn, half, endpoint=False),
            np.linspace(turn, leave, t1 - t0 - half, endpoint=False),
        ]
    )
    before = _approach(entry, inward, speed, t0)
    heading = math.atan2(-inward[1], -inward[0])
    after = _simulate(scene, leave, heading, speed, radius, scene.frames - t1)
    return [_Sprite(np.concatenate([before, inside, after]), radius, colour, disc)]


def _crowd(rng: np.random.Generator, scene: _Scene, scatter: Interval | None) -> list[_Sprite]:
    """10-20 dots milling slowly around a centre; from `scatter[0]` to `scatter[1]` they fly
    outwards at constant speed and stop there, short of the forbidden zone."""
    count = int(rng.integers(10, 21))
    size = min(scene.width, scene.height)
    centre = _free_point(rng, scene, 0.2 * size, 0.12)
    spread = 0.06 * size
    offsets = np.clip(rng.normal(0.0, spread, (count, 2)), -2.5 * spread, 2.5 * spread)
    radius = max(1.5, 0.018 * size)
    t = np.arange(scene.frames, dtype=float)
    sprites = []
    for off in offsets:
        wobble = rng.uniform(1, 3)
        angle = rng.uniform(0.5, 1.5) / scene.fps * t + rng.uniform(0, 2 * math.pi)
        track = centre + off + wobble * np.stack([np.cos(angle), np.sin(angle)], 1)
        if scatter is not None:
            track = track + _burst(rng, scene, centre + off, off, scatter, radius)
        colour = _colour(rng, 60, 256)
        if not _in_zone(centre + off, scene.zone, radius + wobble + 1):
            sprites.append(_Sprite(track, radius, colour, True))
    return sprites


def _burst(
    rng: np.random.Generator,
    scene: _Scene,
    home: np.ndarray,
    off: np.ndarray,
    event: Interval,
    radius: float,
) -> np.ndarray:
    """Displacement `(T, 2)` of one dot flying radially away from the crowd centre."""
    t0, t1 = event
    norm = float(np.hypot(*off))
    direction = off / norm if norm > 1e-6 else _unit(rng.uniform(0, 2 * math.pi))
    reach = rng.uniform(0.35, 0.6) * min(scene.width, scene.height)
    for s in np.linspace(0.0, reach, 40):
        if _in_zone(home + direction * s, scene.zone, radius + 1):
            reach = max(0.0, s - reach / 40)
            break
    # Constant speed from t0 until the dot stops at t1, so the dots move for the whole annotated
    # range. (An exponential settling with tau = length/4 left the event's second half still and
    # identical to the scattered state after it: frames annotated anomalous with nothing to see.)
    progress = np.clip((np.arange(scene.frames, dtype=float) - t0) / max(1, t1 - t0), 0.0, 1.0)
    return direction[None, :] * (reach * progress)[:, None]


# --------------------------------------------------------------------------- drawing


def _draw_sprite(img: np.ndarray, sprite: _Sprite, t: int) -> None:
    """Paint one sprite at frame `t` into `img` (H, W, 3) float32 in place; off-frame clips."""
    cx, cy = sprite.track[t]
    r = sprite.radius
    h, w = img.shape[:2]
    xa, xb = max(0, math.floor(cx - r)), min(w, math.ceil(cx + r) + 1)
    ya, yb = max(0, math.floor(cy - r)), min(h, math.ceil(cy + r) + 1)
    if xa >= xb or ya >= yb:
        return
    if not sprite.disc:
        img[ya:yb, xa:xb] = sprite.colour
        return
    ys, xs = np.ogrid[ya:yb, xa:xb]
    mask = (xs - cx) ** 2 + (ys - cy) ** 2 <= r * r
    img[ya:yb, xa:xb][mask] = sprite.colour


def _flash(
    rng: np.random.Generator, scene: _Scene, event: Interval
) -> Callable[[np.ndarray, int], None]:
    """An explosion painter: expanding white-yellow disc plus a flickering global brightening,
    both decaying exponentially over the event."""
    t0, t1 = event
    centre = _free_point(rng, scene, 0.0, 0.2)
    r_max = max(scene.width, scene.height) * rng.uniform(0.35, 0.5)
    flicker = rng.uniform(-1.0, 1.0, scene.frames)
    ys, xs = np.ogrid[: scene.height, : scene.width]
    dist = np.hypot(xs - centre[0], ys - centre[1]).astype(np.float32)[:, :, None]
    colour = np.array([255, 240, 160], np.float32)

    def paint(img: np.ndarray, t: int) -> None:
        if not t0 <= t < t1:
            return
        p = (t - t0) / (t1 - t0)
        strength = math.exp(-3.5 * p) * (1.0 + 0.25 * flicker[t])
        radius = r_max * (0.3 + 0.7 * math.sqrt(p))
        alpha = 0.9 * strength * np.clip((radius - dist) / 3.0 + 0.5, 0.0, 1.0)
        img *= 1.0 - alpha
        img += alpha * colour + 90.0 * strength

    return paint


def render_video(spec: SynthSpec, plan: VideoPlan) -> np.ndarray:
    """Draw one video of `plan`.

    Returns:
        frames, shape `(round(fps * seconds), height, width, 3)`, dtype uint8, RGB.
    """
    rng = np.random.default_rng([spec.seed, plan.index, 1])
    # Drawn even with cameras (then replaced by the camera's scene): `rng` is at the same point either
    # way, so a video's objects and event are drawn from the same random sequence with or without cameras.
    scene = _make_scene(rng, spec)
    if spec.cameras:
        scene = _make_scene(np.random.default_rng([spec.seed, camera_of(spec, plan.index), 3]), spec)
    sprites, painters = _populate(rng, scene, plan)
    noise_rng = np.random.default_rng([spec.seed, plan.index, 2])
    out = np.empty((scene.frames, scene.height, scene.width, 3), np.uint8)
    for t in range(scene.frames):
        img = scene.background.copy()
        for sprite in sprites:
            _draw_sprite(img, sprite, t)
        for paint in painters:
            paint(img, t)
        img += noise_rng.integers(-2, 3, (scene.height, scene.width, 1)).astype(np.float32)
        np.clip(np.rint(img), 0, 255, out=img)
        out[t] = img
    return out


def camera_of(spec: SynthSpec, index: int) -> int:
    """The camera (0 .. cameras - 1) of video `index` when `spec.cameras` > 0: seeded at random, not
    by position, since labels are assigned round-robin and a position rule would tie cameras to them."""
    return int(np.random.default_rng([spec.seed, index, 4]).integers(spec.cameras))


def _populate(
    rng: np.random.Generator, scene: _Scene, plan: VideoPlan
) -> tuple[list[_Sprite], list[Callable[[np.ndarray, int], None]]]:
    """The sprites (crowd first, drawn below the objects) and frame painters of a video."""
    label, event = plan.label, plan.event
    crowd = label == "Scattering" or rng.random() < _CROWD_IN_NORMAL
    sprites = _crowd(rng, scene, event if label == "Scattering" else None) if crowd else []
    special: list[_Sprite] = []
    painters = []
    if event is not None and label == "Speeding":
        special = _speeding(rng, scene, event)
    elif event is not None and label == "Collision":
        special = _collision_pair(rng, scene, event)
    elif event is not None and label == "Intrusion":
        special = _intruder(rng, scene, event)
    elif event is not None and label == "Explosion":
        painters.append(_flash(rng, scene, event))
    total = int(rng.integers(3, 7))
    sprites += special + [_wanderer(rng, scene) for _ in range(max(0, total - len(special)))]
    return sprites, painters


# --------------------------------------------------------------------------- writing


def encode_mp4(frames: np.ndarray, path: str | os.PathLike[str], fps: int) -> None:
    """Encode `frames` (T, H, W, 3) uint8 RGB as H.264 yuv420p mp4 at `fps`, atomically.

    Byte-identical output for identical frames: one encoder thread and `tune=zerolatency`
    (no B-frames, no lookahead; with them x264 output varied between runs when the height is
    not a multiple of 16). A 1-second GOP keeps random access cheap for decoders.
    """
    write_atomic(path, lambda temp: _encode(frames, temp, fps))


def _encode(frames: np.ndarray, path: str, fps: int) -> None:
    """:func:`encode_mp4` into ``path`` as it is, not atomically."""
    import av  # heavy optional dependency, imported where it is used

    with av.open(path, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.thread_count = 1
        stream.options = {
            "threads": "1",
            "preset": "veryfast",
            "tune": "zerolatency",
            "crf": "20",
            "g": str(fps),
        }
        for index, array in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")
            frame.pts, frame.time_base = index, Fraction(1, fps)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def _write_text(path: Path, lines: list[str]) -> None:
    """Write `lines` to `path` atomically, one per line, UTF-8."""
    write_atomic(path, "".join(line + "\n" for line in lines).encode("utf-8"))


def _write_annotations(ann: Path, plans: list[VideoPlan]) -> None:
    """train.txt, test.txt and test_temporal.txt (UCF format, test videos only)."""
    ann.mkdir(parents=True, exist_ok=True)
    for split, name in (("train", TRAIN_LIST), ("test", TEST_LIST)):
        _write_text(ann / name, [f"{p.video_id} {p.label}" for p in plans if p.split == split])
    temporal = []
    for p in plans:
        if p.split == "test":
            s, e = p.event if p.event is not None else (-1, -1)
            temporal.append(f"{p.video_id}  {p.label}  {s}  {e}  -1  -1")
    _write_text(ann / TEMPORAL_FILE, temporal)


def generate_corpus(
    out_dir: str | os.PathLike[str],
    spec: SynthSpec,
    progress: Callable[[int, int], None] | None = None,
) -> list[VideoRecord]:
    """Generate the synthetic corpus of `spec` into `out_dir` (videos/ and annotations/).

    Existing files of the same names are overwritten; other files are left alone.

    Args:
        out_dir: corpus folder, created if missing.
        spec: what to generate.
        progress: called as `progress(done, total)` after each video.

    Returns:
        the corpus records, exactly as `read_corpus(out_dir)` returns them.
    """
    root = Path(out_dir)
    plans = plan_corpus(spec)
    for done, plan in enumerate(plans, start=1):
        target = root / VIDEOS_DIR / plan.video_id
        target.parent.mkdir(parents=True, exist_ok=True)
        encode_mp4(render_video(spec, plan), target, spec.fps)
        if progress is not None:
            progress(done, len(plans))
    _write_annotations(root / ANNOTATIONS_DIR, plans)
    return read_corpus(root)
