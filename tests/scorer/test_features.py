"""Segment features from real decoded frames: layout, cues, and the pluggable CLIP extractor."""

import numpy as np
import pytest

from dualvad.scorer.features import (
    CUE_GROUPS,
    CUES,
    ClipExtractor,
    MotionAppearanceExtractor,
    SegmentPart,
    build_extractor,
    count_blobs,
    cue_column_groups,
    extract_video_features,
    pair_indices,
    segment_cues,
    segment_median,
    video_context,
)
from dualvad.video.config import IngestConfig

from media import write_video

CUE = {name: i for i, name in enumerate(CUES)}


def test_pair_indices_exact():
    np.testing.assert_array_equal(pair_indices(0, 10, 2, 100), [2, 3, 7, 8])
    np.testing.assert_array_equal(pair_indices(98, 100, 4, 100), [98, 99, 99, 99])


def test_pair_indices_snap_to_a_keyframe_inside_each_subinterval():
    # sub-intervals [0, 5) and [5, 10): their first keyframe replaces the centre (2, 7) if any
    np.testing.assert_array_equal(pair_indices(0, 10, 2, 100, np.array([0, 3, 30])), [0, 1, 7, 8])
    np.testing.assert_array_equal(pair_indices(0, 10, 2, 100, np.array([3, 6])), [3, 4, 6, 7])
    np.testing.assert_array_equal(pair_indices(10, 20, 2, 100, np.array([0, 30])), [12, 13, 17, 18])


def test_segment_median_equals_numpy_for_odd_and_even_counts():
    values = np.random.default_rng(0).normal(size=(7, 4, 3)).astype(np.float32)
    np.testing.assert_allclose(segment_median(values), np.median(values, axis=0), rtol=0, atol=1e-7)
    np.testing.assert_allclose(segment_median(values[:6]), np.median(values[:6], axis=0), rtol=0, atol=1e-7)
    np.testing.assert_array_equal(segment_median(np.array([[3.0], [1.0], [2.0], [10.0]])), [2.5])


def test_count_blobs_exact():
    masks = np.zeros((2, 3, 5, 6), dtype=bool)
    masks[0, 1, 0, 0] = masks[0, 1, 1, 1] = True  # diagonal neighbours: one 8-connected region
    masks[0, 1, 3:5, 3:6] = True
    masks[1, 0, 0, ::2] = True  # three separate pixels
    masks[1, 2] = True  # the whole mask
    np.testing.assert_array_equal(count_blobs(masks), [[0, 2, 0], [3, 0, 1]])


def test_video_context_is_the_smoothed_rise_and_drop_against_the_video_median():
    cues = np.array([[0.0, 5.0], [0.0, 5.0], [3.0, 5.0], [0.0, 5.0], [0.0, -1.0]], dtype=np.float32)
    out = video_context(cues)
    assert out.shape == (5, 4) and out.dtype == np.float32
    # cue 0: median 0, deviation [0,0,3,0,0], centred mean over 3 -> [0,1,1,1,0], a rise only
    np.testing.assert_allclose(out[:, 0], [0, 1, 1, 1, 0], atol=1e-6)
    np.testing.assert_array_equal(out[:, 2], 0.0)
    # cue 1: median 5, deviation [0,0,0,0,-6]; the last end is repeated -> drop [0,0,0,2,4]
    np.testing.assert_array_equal(out[:, 1], 0.0)
    np.testing.assert_allclose(out[:, 3], [0, 0, 0, 2, 4], atol=1e-6)


def _video(segments: int = 9, pairs: int = 2) -> np.ndarray:
    """uint8 (S, 2P, 24, 32, 3): a still gray scene with a red square at the right (gray 90, not 100)."""
    frames = np.full((segments, 2 * pairs, 24, 32, 3), 100, dtype=np.uint8)
    frames[..., 4:12, 20:28, :] = (200, 50, 20)
    return frames


def test_segment_cues_of_a_still_video_are_zero_motion():
    cues = segment_cues(_video())
    assert cues.shape == (9, len(CUES)) and cues.dtype == np.float32
    for name in ("local_motion", "active_cells", "moving_share", "motion_energy", "moving_blobs",
                 "brightness_jump", "foreground_share", "stationary_share"):
        np.testing.assert_array_equal(cues[:, CUE[name]], 0.0, err_msg=name)
    # every pixel is unchanged, the change sits at its floor, the picture is the background
    np.testing.assert_array_equal(cues[:, CUE["unchanged_share"]], 1.0)
    np.testing.assert_allclose(cues[:, CUE["change_level"]], -4.0, atol=1e-6)
    np.testing.assert_allclose(cues[:, CUE["scene_change"]], 0.0, atol=1e-5)


def test_segment_cues_see_motion_flash_and_a_covered_lens():
    frames = _video()
    frames[1, 1::2, :, :8] = 255  # segment 1: the second frame of each pair changes on the left
    frames[3] = 250  # segment 3: a flash
    cues = segment_cues(frames)
    moving = cues[:, CUE["moving_share"]]
    assert moving[1] == pytest.approx(8 / 32) and moving[[0, 2, 4, 6, 7, 8]].max() == 0.0
    assert cues[1, CUE["moving_blobs"]] == 1.0  # one moving region in each pair
    assert np.argmax(cues[:, CUE["brightness_max"]]) == 3 and cues[3, CUE["saturated_share"]] == 1.0
    # the uniform frame of segment 3 has no detail, no contrast, no correlation with the scene
    assert cues[3, CUE["detail"]] == pytest.approx(-3.0, abs=1e-4)
    assert cues[3, CUE["contrast"]] == pytest.approx(-3.0, abs=1e-4)  # float32 std of 250/255: ~1e-7
    assert cues[3, CUE["scene_change"]] == 1.0
    # the scene's contrast: a 64-pixel square 10 gray levels darker on 768 pixels
    contrast = np.log10(10 / 255 * np.sqrt(1 / 12 * 11 / 12) + 1e-3)
    np.testing.assert_allclose(cues[[0, 2, 4], CUE["contrast"]], contrast, rtol=1e-5)


def test_stationary_share_marks_an_object_that_stays():
    index = np.arange(16)
    frames = _video(segments=16)
    frames[4:9, ..., 2:6, 2:6, :] = (0, 0, 255)  # a blue block stands in segments 4..8
    cues = segment_cues(frames)
    standing = (index >= 4) & (index <= 8)
    np.testing.assert_allclose(cues[:, CUE["foreground_share"]], np.where(standing, 16 / 768, 0), atol=1e-7)
    # no segment has it both 3 segments before and 3 after
    assert cues[:, CUE["stationary_share"]].max() == 0.0
    frames[9:11, ..., 2:6, 2:6, :] = (0, 0, 255)  # it stays until segment 10: segment 7 qualifies
    still = segment_cues(frames)[:, CUE["stationary_share"]]
    np.testing.assert_allclose(still, np.where(index == 7, 16 / 768, 0), atol=1e-7)


def test_motion_extractor_is_the_video_context_of_the_segment_cues():
    extractor = MotionAppearanceExtractor(32, 24)
    frames = _video()
    frames[4, 1::2, :, :8] = 255
    out = extractor(frames)
    assert out.shape == (9, extractor.dim) and extractor.dim == 2 * len(CUES) and out.dtype == np.float32
    np.testing.assert_array_equal(out, video_context(segment_cues(frames)))
    rise = out[:, CUE["moving_share"]]
    assert rise[3:6].min() > 0.0 and rise[[0, 1, 2, 6, 7, 8]].max() == 0.0  # smoothed over 3 segments


def test_extract_video_features_segments_and_dims(tmp_path):
    path = write_video(tmp_path / "v.mp4", 50, width=64, height=48)
    extractor = build_extractor("motion", width=32, height=24)
    video = extract_video_features(str(path), extractor, num_segments=8, frames_per_segment=4)
    assert video.num_frames == 50 and video.fps == 15.0
    assert video.bounds[0].tolist() == [0, 6] and video.bounds[-1].tolist() == [43, 50]
    assert video.features.shape == (8, extractor.dim) and video.features.dtype == np.float32
    assert np.isfinite(video.features).all() and (video.features >= 0).all()
    # the background level climbs frame after frame: brightness rises above the median late
    # in the video and drops below it early
    brightness = CUE["brightness_max"]
    assert video.features[-1, brightness] > 0 and video.features[0, len(CUES) + brightness] > 0


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


def test_extract_features_writes_clip_snippets_per_crop_and_records_how(tmp_path, tiny_clip):
    import json

    from dualvad.corpus.feature_files import load_features, scan_features
    from dualvad.corpus.layout import VideoRecord
    from dualvad.scorer.extract import METADATA_FILE, extract_corpus
    from dualvad.video.config import IngestConfig

    videos = [VideoRecord("cam/a.mp4", str(write_video(tmp_path / "cam" / "a.mp4", 40)), "Normal", "train")]
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    videos.append(VideoRecord("broken.mp4", str(tmp_path / "broken.mp4"), "Normal", "train"))
    config = IngestConfig(feature="clip", clip_model=tiny_clip, frames_per_segment=2)
    summary = extract_corpus(videos, str(tmp_path / "two"), config, "crops")
    assert (summary.written, summary.files, [vid for vid, _ in summary.failures]) == (1, 2, ["broken.mp4"])
    (found,) = scan_features(str(tmp_path / "two"), ["cam/a.mp4"])
    two = load_features(str(tmp_path / "two"), found)
    assert found.files == ("cam/a__0.npy", "cam/a__1.npy") and two.shape == (3, 2, 16)  # ceil(40 / 16) = 3
    assert np.abs(two[:, 0] - two[:, 1]).max() > 0  # the mirrored crop is another view
    metadata = json.loads((tmp_path / "two" / METADATA_FILE).read_text())
    assert (metadata["model"], metadata["dim"], metadata["resolution"]) == (tiny_clip, 16, [32, 32])
    assert metadata["videos"] == {"cam/a.mp4": 3} and metadata["failures"][0]["video_id"] == "broken.mp4"
    extract_corpus(videos[:1], str(tmp_path / "one"), config, "single")
    (single,) = scan_features(str(tmp_path / "one"), ["cam/a.mp4"])
    np.testing.assert_allclose(load_features(str(tmp_path / "one"), single), two[:, :1], atol=1e-6)


def test_segment_parts_joined_give_the_whole_videos_features() -> None:
    """A live stream computes each segment's part once and joins a window of them: the same features, bit
    for bit, as the extractor on the window's frames at once."""
    frames = np.random.default_rng(0).integers(0, 256, (9, 4, 24, 32, 3), dtype=np.uint8)
    frames[3:6] //= 3  # a dark stretch: the window's background and median matter
    extractor = MotionAppearanceExtractor()
    parts = [extractor.segment_part(frames[i : i + 1]) for i in range(len(frames))]
    joined = extractor.window_features(SegmentPart.join(parts))
    np.testing.assert_array_equal(joined, extractor(frames))
    window = extractor.window_features(SegmentPart.join(parts).take(slice(2, None)))
    np.testing.assert_array_equal(window, extractor(frames[2:]))


def test_a_reference_of_the_segments_themselves_changes_nothing_and_another_one_does() -> None:
    """A stream's cues are relative to a reference history: given the window's own segments it is the
    extractor's video-relative feature exactly; given other segments (a brighter scene), it is not."""
    frames = np.random.default_rng(1).integers(0, 256, (6, 4, 24, 32, 3), dtype=np.uint8)
    extractor = MotionAppearanceExtractor()
    part = extractor.segment_part(frames)
    np.testing.assert_array_equal(extractor.window_features(part, part), extractor(frames))
    brighter = extractor.segment_part(np.clip(frames.astype(int) + 60, 0, 255).astype(np.uint8))
    assert not np.allclose(extractor.window_features(part, brighter), extractor(frames))


def test_cue_column_groups_follow_video_contexts_layout():
    groups = cue_column_groups(IngestConfig(), 2 * len(CUES))
    assert groups.dtype == np.int64 and groups.shape == (2 * len(CUES),)
    names = list(CUE_GROUPS)
    for column, cue in enumerate(CUES):  # a cue's rise (column) and drop (column + C) share its group
        assert names[groups[column]] == names[groups[column + len(CUES)]]
        assert cue in CUE_GROUPS[names[groups[column]]]
    assert sorted(set(groups.tolist())) == list(range(len(CUE_GROUPS)))


def test_features_other_than_the_motion_cues_have_no_groups():
    assert cue_column_groups(IngestConfig(feature="clip"), 2 * len(CUES)) is None
    assert cue_column_groups(IngestConfig(features="/data/i3d"), 2 * len(CUES)) is None
    assert cue_column_groups(IngestConfig(), 2048) is None
