"""Segment features from real decoded frames: layout, cues, and the pluggable CLIP extractor."""

import numpy as np
import pytest

from dualvad.scorer.features import (
    GRID,
    ClipExtractor,
    MotionAppearanceExtractor,
    build_extractor,
    extract_video_features,
    pair_indices,
)

from media import write_video

MOTION_MEAN = 2 * GRID * GRID + 3 + 3 + 2 * GRID * GRID  # index of "mean per-pair |diff|"


def test_pair_indices_exact():
    np.testing.assert_array_equal(pair_indices(0, 10, 2, 100), [2, 3, 7, 8])
    np.testing.assert_array_equal(pair_indices(98, 100, 4, 100), [98, 99, 99, 99])


def test_pair_indices_snap_to_a_keyframe_inside_each_subinterval():
    # sub-intervals [0, 5) and [5, 10): their first keyframe replaces the centre (2, 7) if any
    np.testing.assert_array_equal(pair_indices(0, 10, 2, 100, np.array([0, 3, 30])), [0, 1, 7, 8])
    np.testing.assert_array_equal(pair_indices(0, 10, 2, 100, np.array([3, 6])), [3, 4, 6, 7])
    np.testing.assert_array_equal(pair_indices(10, 20, 2, 100, np.array([0, 30])), [12, 13, 17, 18])


def test_motion_feature_layout_and_cues():
    extractor = MotionAppearanceExtractor(32, 24)
    still = np.full((4, 24, 32, 3), 100, dtype=np.uint8)
    moving = still.copy()
    moving[1::2, :, :8] = 255  # the second frame of each pair changes: motion on the left
    flash = still.copy()
    flash[:, :, :] = 250
    batch = extractor(np.stack([still, moving, flash]))
    assert batch.shape == (3, extractor.dim) and batch.dtype == np.float32
    f_still, f_moving, f_flash = batch
    assert f_still[MOTION_MEAN] == 0.0 and f_moving[MOTION_MEAN] > 0.1
    motion_grid = f_moving[2 * GRID * GRID + 6 : 3 * GRID * GRID + 6].reshape(GRID, GRID)
    assert motion_grid[:, 0].min() > 0.5 and motion_grid[:, 1:].max() == 0.0  # left column only
    brightness_max = 2 * GRID * GRID + 4
    assert f_flash[brightness_max] > 0.95 > 0.5 > f_still[brightness_max]


def test_extract_video_features_segments_and_dims(tmp_path):
    path = write_video(tmp_path / "v.mp4", 50, width=64, height=48)
    extractor = build_extractor("motion", width=32, height=24)
    video = extract_video_features(str(path), extractor, num_segments=8, frames_per_segment=4)
    assert video.num_frames == 50 and video.fps == 15.0
    assert video.bounds[0].tolist() == [0, 6] and video.bounds[-1].tolist() == [43, 50]
    assert video.features.shape == (8, extractor.dim) and video.features.dtype == np.float32
    # the bar moves one column per frame and the background changes level: motion everywhere
    assert (video.features[:, MOTION_MEAN] > 0).all()


def test_unknown_extractor_is_an_error():
    with pytest.raises(ValueError, match="'sift'.*'motion' or 'clip'"):
        build_extractor("sift")


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    config = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                              num_attention_heads=4, image_size=32, patch_size=8, projection_dim=16)
    folder = tmp_path_factory.mktemp("tiny_clip")
    CLIPVisionModelWithProjection(config).save_pretrained(folder)
    return str(folder)


def test_clip_extractor_on_decoded_video(tmp_path, tiny_clip):
    extractor = build_extractor("clip", model=tiny_clip)
    assert isinstance(extractor, ClipExtractor)
    assert extractor.decode_size == (32, 32) and extractor.dim == 16
    path = write_video(tmp_path / "v.mp4", 24)
    video = extract_video_features(str(path), extractor, num_segments=4, frames_per_segment=2)
    assert video.features.shape == (4, 16) and np.isfinite(video.features).all()
    assert np.abs(video.features[0] - video.features[-1]).max() > 0  # frames differ, so do embeds
