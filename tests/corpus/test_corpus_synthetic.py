"""The synthetic corpus: real decodable H.264 files, exact annotations, determinism, and
events that are visible in the decoded pixels."""

from __future__ import annotations

import colorsys
from pathlib import Path

import decord
import numpy as np
import pytest

from dualvad.corpus import SynthSpec, generate_corpus, read_corpus
from dualvad.corpus.synth_events import render_video
from dualvad.corpus.synth_plan import CATEGORIES, camera_of, plan_corpus
from dualvad.corpus.synth_scene import make_scene, random_colour
from dualvad.files import TEMP_PREFIX

SPEC = SynthSpec(videos=10, seconds=2.0, seed=0)  # 30 frames of 160x120 per video
FRAMES = 30


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("synth")
    calls: list[tuple[int, int]] = []
    records = generate_corpus(root, SPEC, progress=lambda done, total: calls.append((done, total)))
    return root, records, calls


def decode(path: str) -> np.ndarray:
    """All frames, (T, H, W, 3) int16 for arithmetic."""
    reader = decord.VideoReader(path)
    return reader.get_batch(list(range(len(reader)))).asnumpy().astype(np.int16)


def event_and_rest(values: np.ndarray, start: int, end: int) -> tuple[float, float]:
    """Mean of per-transition `values[t]` (frame t -> t+1) inside `[start, end)` and outside."""
    t = np.arange(len(values))
    inside = (t >= start) & (t + 1 < end)
    outside = (t + 1 < start) | (t >= end)
    return float(values[inside].mean()), float(values[outside].mean())


def scene_of(index: int):
    """The scene `render_video` draws for video `index` of SPEC (the first draw of the video's generator)."""
    return make_scene(np.random.default_rng([SPEC.seed, index, 1]), SPEC)


def test_zones_are_painted_in_colours_of_every_hue_and_nothing_keeps_a_colour() -> None:
    """The zone's paint is drawn per scene from every hue, so no colour marks it (or its intruder)."""
    hues = [colorsys.rgb_to_hsv(*(c / 255 for c in scene_of(i).zone_paint))[0] for i in range(40)]
    assert np.histogram(hues, bins=4, range=(0, 1))[0].min() >= 4  # 40 draws: every quarter of the circle
    rng = np.random.default_rng(0)
    colours = np.array([random_colour(rng, 30, 256) for _ in range(400)])
    redness = colours[:, 0] - colours[:, 1:].max(axis=1)
    assert redness.max() > 100  # objects and blocks may be as red as any paint


def anomaly(records, label: str):
    (found,) = [r for r in records if r.label == label and r.split == "test"]
    return found


def test_labels_splits_and_progress(corpus) -> None:
    _, records, calls = corpus
    assert calls == [(i, 10) for i in range(1, 11)]
    labels = sorted(r.label for r in records)
    assert labels == sorted([*CATEGORIES, *["Normal"] * 5])
    test = [r for r in records if r.split == "test"]
    assert {r.label for r in test} == {*CATEGORIES, "Normal"}
    assert [r.video_id.split("/")[0] for r in records] == [r.label for r in records]


def test_read_corpus_returns_the_same_records(corpus) -> None:
    root, records, _ = corpus
    assert read_corpus(root) == records
    assert [(r.split, r.video_id) for r in records] == sorted(
        (r.split, r.video_id) for r in records
    )


def test_temporal_annotations(corpus) -> None:
    _, records, _ = corpus
    for r in records:
        if r.split == "train":
            assert r.intervals is None
        elif not r.is_anomalous:
            assert r.intervals == ()
        else:
            ((start, end),) = r.intervals
            assert 0 < start < end < FRAMES
            assert 0.15 * FRAMES <= end - start <= 0.5 * FRAMES
    root = corpus[0]
    lines = (root / "annotations" / "test_temporal.txt").read_text().splitlines()
    assert any(line.endswith("Normal  -1  -1  -1  -1") for line in lines)


def test_videos_decode_with_decord(corpus) -> None:
    _, records, _ = corpus
    for r in records:
        reader = decord.VideoReader(r.path)
        assert len(reader) == FRAMES == SPEC.fps * SPEC.seconds
        assert reader[0].shape == (SPEC.height, SPEC.width, 3)
        assert reader.get_avg_fps() == pytest.approx(SPEC.fps)
        assert r.path.endswith(".mp4")


def test_generation_is_byte_identical(corpus, tmp_path: Path) -> None:
    root, records, _ = corpus
    again = generate_corpus(tmp_path, SPEC)
    assert [(r.video_id, r.label, r.split, r.intervals) for r in again] == [
        (r.video_id, r.label, r.split, r.intervals) for r in records
    ]
    files = sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert not [f for f in files if f.name.startswith(TEMP_PREFIX)]
    for name in files:
        assert (root / name).read_bytes() == (tmp_path / name).read_bytes(), name


def test_another_seed_gives_other_videos(tmp_path: Path) -> None:
    spec = SynthSpec(videos=1, seconds=1.0, seed=1)
    first = generate_corpus(tmp_path / "a", spec)[0]
    other = generate_corpus(tmp_path / "b", SynthSpec(videos=1, seconds=1.0, seed=2))[0]
    assert Path(first.path).read_bytes() != Path(other.path).read_bytes()


def test_explosion_changes_whole_frames(corpus) -> None:
    ((start, end),) = (r := anomaly(corpus[1], "Explosion")).intervals
    frames = decode(r.path)
    mean_abs_diff = np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2, 3))
    inside, outside = event_and_rest(mean_abs_diff, start, end)
    assert inside > 3 * outside
    assert frames[start].mean() > frames[start - 1].mean() + 30  # the flash


def moving_pixels(frames: np.ndarray) -> np.ndarray:
    """Pixels per transition whose colour changes by more than 30 levels: (T-1,)."""
    return (np.abs(np.diff(frames, axis=0)).max(axis=3) > 30).sum(axis=(1, 2)).astype(float)


@pytest.mark.parametrize("label", ["Speeding", "Scattering"])
def test_fast_motion_during_the_event(corpus, label: str) -> None:
    r = anomaly(corpus[1], label)
    ((start, end),) = r.intervals
    inside, outside = event_and_rest(moving_pixels(decode(r.path)), start, end)
    assert inside > 1.3 * outside


def test_scattering_moves_until_the_event_end(corpus) -> None:
    # the annotation's second half must show the dispersal too, not a crowd already at rest
    r = anomaly(corpus[1], "Scattering")
    ((start, end),) = r.intervals
    moving = moving_pixels(decode(r.path))
    late, outside = event_and_rest(moving, (start + end) // 2, end)
    assert late > 1.3 * outside


def test_intrusion_enters_the_zone(corpus) -> None:
    r = anomaly(corpus[1], "Intrusion")
    ((start, end),) = r.intervals
    frames = decode(r.path)
    (plan,) = [p for p in plan_corpus(SPEC) if p.label == "Intrusion" and p.split == "test"]
    x0, y0, x1, y1 = (round(v) for v in scene_of(plan.index).zone)
    inner = frames[:, y0 + 4 : y1 - 3, x0 + 4 : x1 - 3]
    changed = np.abs(inner - np.median(inner, axis=0)).max(axis=3) > 40
    occupancy = changed.mean(axis=(1, 2))  # share of the zone covered by something moving
    t = np.arange(len(frames))
    during = occupancy[(t >= start) & (t < end)].mean()
    assert during > 0.03
    assert during > 5 * occupancy[(t < start) | (t >= end)].mean()


def test_normal_videos_have_no_flash_or_burst(corpus) -> None:
    for r in corpus[1]:
        if r.is_anomalous:
            continue
        frames = decode(r.path)
        brightness = frames.mean(axis=(1, 2, 3))
        assert np.abs(np.diff(brightness)).max() < 5
        moving = moving_pixels(frames)
        assert moving.max() < 4 * max(np.median(moving), 1.0)


def test_plan_spreads_categories_and_splits() -> None:
    plans = plan_corpus(SynthSpec())
    assert [p.label for p in plans if p.label != "Normal"] == [*CATEGORIES, *CATEGORIES[:3]]
    assert {p.label for p in plans if p.split == "test"} == {*CATEGORIES, "Normal"}
    assert sum(p.split == "test" for p in plans) == 9
    assert all((p.event is None) == (p.label == "Normal") for p in plans)
    starts = {p.event[0] for p in plans if p.event is not None}
    assert len(starts) > 3  # not always the middle
    assert plan_corpus(SynthSpec(anomaly_share=0.0, test_share=0.0))[0].split == "train"


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"videos": 0}, "config key 'videos' must be >= 1, got 0"),
        ({"width": 161}, "config key 'width' must be a multiple of 2, got 161"),
        ({"height": 30}, "config key 'height' must be >= 32, got 30"),
        ({"seconds": 0.5}, "config key 'seconds' must give fps * seconds >= 10 frames (fps 15), got 0.5"),
        ({"anomaly_share": 1.5}, "config key 'anomaly_share' must be <= 1, got 1.5"),
        ({"test_share": -0.1}, "config key 'test_share' must be >= 0, got -0.1"),
        ({"cameras": -1}, "config key 'cameras' must be >= 0, got -1"),
    ],
)
def test_spec_validation(kwargs: dict, fragment: str) -> None:
    with pytest.raises(ValueError) as error:  # a SettingError, as every config section raises
        SynthSpec(**kwargs)
    assert str(error.value) == fragment


def scenery(spec: SynthSpec, index: int) -> np.ndarray:
    """A video's still scenery: the per-pixel median over its frames (the moving sprites drop out),
    float (H, W, 3)."""
    return np.median(render_video(spec, plan_corpus(spec)[index]).astype(np.float32), axis=0)


def same_scenery(a: np.ndarray, b: np.ndarray) -> float:
    """Share of pixels whose scenery agrees within 8 levels in every channel."""
    return float((np.abs(a - b).max(axis=2) <= 8).mean())


def test_clips_of_one_camera_share_their_scenery() -> None:
    """With cameras, a normal and an anomalous clip of the same camera show the same scene (up to the
    pixels the sprites cover for half the frames or more); without, every video has a scene of its own."""
    shared = SynthSpec(videos=10, seconds=2.0, seed=0, cameras=2)
    plans = plan_corpus(shared)
    normal = next(p.index for p in plans if p.label == "Normal" and camera_of(shared, p.index) == 0)
    anomalous = next(p.index for p in plans if p.label != "Normal" and camera_of(shared, p.index) == 0)
    assert same_scenery(scenery(shared, normal), scenery(shared, anomalous)) > 0.9
    assert same_scenery(scenery(SPEC, normal), scenery(SPEC, anomalous)) < 0.5


def test_cameras_are_drawn_independently_of_the_labels() -> None:
    """Labels go round-robin by position; cameras are seeded draws, so each of 4 cameras holds normal and
    anomalous videos of a 48-video corpus."""
    spec = SynthSpec(videos=48, cameras=4)
    held = {camera: set() for camera in range(4)}
    for plan in plan_corpus(spec):
        held[camera_of(spec, plan.index)].add(plan.label == "Normal")
    assert all(kinds == {True, False} for kinds in held.values())
