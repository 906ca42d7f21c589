"""The scene-relative cues (frozen picture, lens, scene change) on constructed frames, exactly, and the
motion extractor's blindness to the generator's zone colour."""

import numpy as np
import pytest

from dualvad.corpus import SynthSpec
from dualvad.corpus.synth_events import render_video
from dualvad.corpus.synth_plan import plan_corpus
from dualvad.corpus.synth_scene import make_scene
from dualvad.scorer.cues import frozen_cues, lens_cues, scene_cues
from dualvad.scorer.features import CUE_GROUPS, CUES, _foreground, pair_indices, segment_cues
from dualvad.video.segments import segment_bounds


def test_the_cues_in_their_groups_with_no_colour_cue():
    assert {name: len(group) for name, group in CUE_GROUPS.items()} == {
        "brightness": 3, "motion": 5, "foreground": 4, "frozen": 2, "lens": 2, "scene": 1}
    assert CUES[10:] == ("unusual_share", "unusual_peak", "unchanged_share", "change_level", "detail",
                         "contrast", "scene_change")
    assert len(set(CUES)) == 17 and not [cue for cue in CUES if "red" in cue]


def test_a_frozen_pair_has_exactly_no_change():
    change = np.zeros((3, 2, 4, 5), dtype=np.float32)  # segment 0 frozen
    change[1] = 0.01  # segment 1: noise everywhere
    change[2, 0, :2] = 0.5  # segment 2: one pair changes in 2 of its 4 rows
    unchanged, level = frozen_cues(change)
    np.testing.assert_array_equal(unchanged, [1.0, 0.0, 0.75])
    np.testing.assert_allclose(level, np.log10([1e-4, 0.01 + 1e-4, 0.125 + 1e-4]), rtol=1e-6)


def test_detail_and_contrast_of_stripes_their_blur_and_a_uniform_frame():
    gray = np.zeros((3, 2, 4, 6), dtype=np.float32)
    gray[0, ..., 1::2] = 1.0  # vertical stripes: every horizontal neighbour differs by 1, none vertically
    gray[1] = 0.5  # the stripes blurred over two columns: uniform
    gray[2, ..., :3] = 1.0  # half white: one horizontal edge per row
    detail, contrast = lens_cues(gray)
    np.testing.assert_allclose(detail, np.log10([0.5 + 1e-3, 1e-3, 1 / 5 / 2 + 1e-3]), rtol=1e-6)
    np.testing.assert_allclose(contrast, np.log10([0.5 + 1e-3, 1e-3, 0.5 + 1e-3]), rtol=1e-6)


def test_scene_change_ignores_brightness_and_sees_a_cut_or_a_covered_lens():
    pattern = np.random.default_rng(0).uniform(0.2, 0.6, size=(6, 8)).astype(np.float32)
    key = np.stack([pattern] * 7)
    key[1] = 0.5 * pattern + 0.3  # brighter and flatter, the same scene
    key[3] = 1.0 - pattern  # the scene's negative: correlation -1
    key[5] = 0.4  # a covered lens: uniform, its correlation taken as 0
    (change,) = scene_cues(key)
    np.testing.assert_allclose(change, [0, 0, 0, 2, 0, 1, 0], atol=1e-6)


def test_a_recoloured_zone_gives_the_same_cues():
    """A generated intrusion video with its zone recoloured (the channels of every zone pixel rotated, in
    every frame, so the zone takes another hue): the cues change by float rounding only (the gray level
    sums the channels in another order). No cue reads the zone's paint."""
    spec = SynthSpec(videos=10, seconds=3.0, seed=3)
    plan = next(p for p in plan_corpus(spec) if p.label == "Intrusion")
    video = render_video(spec, plan)
    scene = make_scene(np.random.default_rng([spec.seed, plan.index, 1]), spec)  # render_video's first draw
    x0, y0, x1, y1 = (round(v) for v in scene.zone)
    recoloured = video.copy()
    recoloured[:, y0:y1, x0:x1] = video[:, y0:y1, x0:x1][..., [2, 0, 1]]
    segments = [pair_indices(int(a), int(b), 2, len(video)) for a, b in segment_bounds(len(video), 12)]
    original, changed = (segment_cues(v[np.stack(segments)]) for v in (video, recoloured))
    assert not np.array_equal(video, recoloured)
    np.testing.assert_allclose(changed, original, rtol=0, atol=1e-5)


def test_unusual_share_counts_change_where_the_pixel_is_normally_still():
    """Two changes of 0.3: on a pixel that is always still (unusual) and on one whose colour always varies
    (background 0.55, median distance 0.1: its 0.25 at segment 3 is 2.5 of them, not UNUSUAL_FACTOR = 6)."""
    key = np.full((8, 2, 2, 3), 0.5, dtype=np.float32)
    key[:, 0, 1] = np.array([0.6, 0.4, 0.6, 0.8, 0.4, 0.6, 0.4, 0.5], np.float32)[:, None]  # restless
    key[3, 0, 0] = 0.8  # segment 3: the still pixel changes by 0.3
    (_, _, unusual, _) = _foreground(key)
    np.testing.assert_array_equal(unusual, [0, 0, 0, 0.25, 0, 0, 0, 0])


def test_unusual_peak_is_the_most_unusual_cell_of_a_4x4_grid():
    """A 4-pixel object appears in one 2x2 cell of an 8x8 picture at segment 2: the peak is that cell's
    share (1.0), the picture's share 4/64; a change spread over the picture gives the same share, no peak."""
    key = np.full((5, 8, 8, 3), 0.5, dtype=np.float32)
    key[2, 2:4, 4:6] = 0.9  # one whole cell
    key[4, ::4, ::2] = 0.9  # 8 pixels scattered over 8 cells, at most 1/4 of any
    (_, _, unusual, peak) = _foreground(key)
    np.testing.assert_array_equal(unusual, [0, 0, 4 / 64, 0, 8 / 64])
    np.testing.assert_array_equal(peak, [0, 0, 1.0, 0, 0.25])


@pytest.mark.parametrize("blur", [1, 2])
def test_blurring_lowers_detail_everywhere(blur):
    gray = np.random.default_rng(1).uniform(size=(2, 2, 12, 16)).astype(np.float32)
    blurred = (gray + np.roll(gray, blur, axis=-1) + np.roll(gray, blur, axis=-2)) / 3
    assert (lens_cues(blurred)[0] < lens_cues(gray)[0] - 0.1).all()
