"""The synthetic corpus's events and drawing (:mod:`dualvad.corpus.synthetic`): each category's sprites or
frame painter, and a whole video rendered from its plan."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np

from dualvad.corpus.layout import Interval
from dualvad.corpus.synth_plan import SynthSpec, VideoPlan, camera_of
from dualvad.corpus.synth_scene import (
    Scene,
    Sprite,
    free_point,
    in_zone,
    make_scene,
    object_speed,
    random_colour,
    random_look,
    simulate,
    unit_vector,
    wanderer,
)

_SPEEDING = (5.0, 8.0)  # speed factor of the speeding object
_CROWD_IN_NORMAL = 0.5  # probability of a milling crowd in a video without a Scattering event


# --------------------------------------------------------------------------- events


def _speeding(rng: np.random.Generator, scene: Scene, event: Interval) -> list[Sprite]:
    factor = np.ones(scene.frames)
    factor[event[0] : event[1]] = rng.uniform(*_SPEEDING)
    return [wanderer(rng, scene, factor)]


def _approach(stop: np.ndarray, direction: np.ndarray, speed: float, until: int) -> np.ndarray:
    """Track `(until, 2)` of a straight approach that reaches `stop` at frame `until`."""
    steps = until - np.arange(until, dtype=float)
    return stop[None, :] - direction[None, :] * speed * steps[:, None]


def _collision_pair(rng: np.random.Generator, scene: Scene, event: Interval) -> list[Sprite]:
    """Two objects approach a meeting point at normal speed, crash (overlap) at the event start,
    stand still until its end, then drive off."""
    t0, t1 = event
    looks = [random_look(rng, scene) for _ in range(2)]
    speeds = [object_speed(rng, scene) for _ in range(2)]
    for _ in range(50):
        meet = free_point(rng, scene, 0.1 * scene.width, 0.2)
        angle = rng.uniform(0, 2 * math.pi)
        dirs = [unit_vector(angle), unit_vector(angle + math.pi + rng.uniform(-0.8, 0.8))]
        stops = [meet - d * 0.8 * look[0] for d, look in zip(dirs, looks, strict=True)]
        pre = [_approach(s, d, v, t0) for s, d, v in zip(stops, dirs, speeds, strict=True)]
        if not any(in_zone(p, scene.zone, looks[0][0]) for track in pre for p in track):
            break
    sprites = []
    for (radius, colour, disc), stop, d, v, before in zip(
        looks, stops, dirs, speeds, pre, strict=True
    ):
        heading = math.atan2(-d[1], -d[0]) + rng.uniform(-1.0, 1.0)
        after = simulate(scene, stop, heading, v, radius, scene.frames - t1)
        track = np.concatenate([before, np.repeat(stop[None, :], t1 - t0, axis=0), after])
        sprites.append(Sprite(track, radius, colour, disc))
    return sprites


def _intruder(rng: np.random.Generator, scene: Scene, event: Interval) -> list[Sprite]:
    """An object reaches a side of the zone at the event start, drives in, turns, and is back
    on that side at the event end, then leaves."""
    t0, t1 = event
    radius, colour, disc = random_look(rng, scene)
    speed = object_speed(rng, scene)
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
    after = simulate(scene, leave, heading, speed, radius, scene.frames - t1)
    return [Sprite(np.concatenate([before, inside, after]), radius, colour, disc)]


def _crowd(rng: np.random.Generator, scene: Scene, scatter: Interval | None) -> list[Sprite]:
    """10-20 dots milling slowly around a centre; from `scatter[0]` to `scatter[1]` they fly
    outwards at constant speed and stop there, short of the forbidden zone."""
    count = int(rng.integers(10, 21))
    size = min(scene.width, scene.height)
    centre = free_point(rng, scene, 0.2 * size, 0.12)
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
        colour = random_colour(rng, 60, 256)
        if not in_zone(centre + off, scene.zone, radius + wobble + 1):
            sprites.append(Sprite(track, radius, colour, True))
    return sprites


def _burst(
    rng: np.random.Generator,
    scene: Scene,
    home: np.ndarray,
    off: np.ndarray,
    event: Interval,
    radius: float,
) -> np.ndarray:
    """Displacement `(T, 2)` of one dot flying radially away from the crowd centre."""
    t0, t1 = event
    norm = float(np.hypot(*off))
    direction = off / norm if norm > 1e-6 else unit_vector(rng.uniform(0, 2 * math.pi))
    reach = rng.uniform(0.35, 0.6) * min(scene.width, scene.height)
    for s in np.linspace(0.0, reach, 40):
        if in_zone(home + direction * s, scene.zone, radius + 1):
            reach = max(0.0, s - reach / 40)
            break
    # Constant speed from t0 until the dot stops at t1, so the dots move for the whole annotated
    # range. (An exponential settling with tau = length/4 left the event's second half still and
    # identical to the scattered state after it: frames annotated anomalous with nothing to see.)
    progress = np.clip((np.arange(scene.frames, dtype=float) - t0) / max(1, t1 - t0), 0.0, 1.0)
    return direction[None, :] * (reach * progress)[:, None]


# --------------------------------------------------------------------------- drawing


def _draw_sprite(img: np.ndarray, sprite: Sprite, t: int) -> None:
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
    rng: np.random.Generator, scene: Scene, event: Interval
) -> Callable[[np.ndarray, int], None]:
    """An explosion painter: expanding white-yellow disc plus a flickering global brightening,
    both decaying exponentially over the event."""
    t0, t1 = event
    centre = free_point(rng, scene, 0.0, 0.2)
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
    out = np.empty((spec.num_frames, spec.height, spec.width, 3), np.uint8)
    for t, frame in enumerate(iter_frames(spec, plan)):
        out[t] = frame
    return out


def iter_frames(spec: SynthSpec, plan: VideoPlan) -> Iterator[np.ndarray]:
    """The frames of :func:`render_video`, one at a time: uint8 (height, width, 3) RGB each, so that a
    minutes-long video is encoded without holding it in memory (8 minutes at 320 x 240 are 3.3 GB)."""
    rng = np.random.default_rng([spec.seed, plan.index, 1])
    # Drawn even with cameras (then replaced by the camera's scene): `rng` is at the same point either
    # way, so a video's objects and event are drawn from the same random sequence with or without cameras.
    scene = make_scene(rng, spec)
    if spec.cameras:
        scene = make_scene(np.random.default_rng([spec.seed, camera_of(spec, plan.index), 3]), spec)
    sprites, painters = _populate(rng, scene, plan)
    noise_rng = np.random.default_rng([spec.seed, plan.index, 2])
    for t in range(scene.frames):
        img = scene.background.copy()
        for sprite in sprites:
            _draw_sprite(img, sprite, t)
        for paint in painters:
            paint(img, t)
        img += noise_rng.integers(-2, 3, (scene.height, scene.width, 1)).astype(np.float32)
        np.clip(np.rint(img), 0, 255, out=img)
        yield img.astype(np.uint8)


def _populate(
    rng: np.random.Generator, scene: Scene, plan: VideoPlan
) -> tuple[list[Sprite], list[Callable[[np.ndarray, int], None]]]:
    """The sprites (crowd first, drawn below the objects) and frame painters of a video."""
    label, event = plan.label, plan.event
    crowd = label == "Scattering" or rng.random() < _CROWD_IN_NORMAL
    sprites = _crowd(rng, scene, event if label == "Scattering" else None) if crowd else []
    special: list[Sprite] = []
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
    sprites += special + [wanderer(rng, scene) for _ in range(max(0, total - len(special)))]
    return sprites, painters


