"""Decoding real mp4 files with decord, and clear errors for broken ones."""

import numpy as np
import pytest

from dualvad.video.decode import VideoDecodeError, open_video, read_frames, stream_size, video_info

from media import bikes_path, frame_level, write_audio_only, write_broken_files, write_video


def test_reads_the_requested_frames(tmp_path):
    path = write_video(tmp_path / "v.mp4", 40)
    reader = open_video(str(path))
    info = video_info(reader)
    assert (info.num_frames, info.fps, info.width, info.height) == (40, 15.0, 64, 48)
    frames = read_frames(reader, np.array([0, 13, 39]), str(path))
    assert frames.shape == (3, 48, 64, 3) and frames.dtype == np.uint8
    for frame, index in zip(frames, [0, 13, 39], strict=True):
        assert abs(int(np.median(frame)) - frame_level(index)) <= 3  # the painted gray level
        assert frame[:, index % 64].mean() > 240  # the bar sits at x = index


def test_resizes_while_decoding(tmp_path):
    path = write_video(tmp_path / "v.mp4", 5, width=64, height=48)
    reader = open_video(str(path), width=32, height=24)
    assert read_frames(reader, np.array([1]), str(path)).shape == (1, 24, 32, 3)


def test_real_clip_bikes():
    path = str(bikes_path())
    reader = open_video(path)
    info = video_info(reader)
    assert info.num_frames == 250 and info.fps == pytest.approx(25.0)
    frames = read_frames(reader, np.array([0, 124, 249]), path)
    assert frames.shape == (3, info.height, info.width, 3)
    assert frames.std() > 10  # real footage, not a blank frame


@pytest.mark.parametrize("kind,reason", [("empty", "0 bytes"), ("text", "not a decodable video"),
                                         ("truncated", "truncated, corrupt")])
def test_unopenable_files_name_the_cause(tmp_path, kind, reason):
    path = write_broken_files(tmp_path)[kind]
    with pytest.raises(VideoDecodeError, match=reason) as error:
        open_video(str(path))
    assert str(path) in str(error.value)


def test_missing_file(tmp_path):
    with pytest.raises(VideoDecodeError, match="does not exist"):
        open_video(str(tmp_path / "nope.mp4"))


def test_one_frame_video_opens_with_one_frame(tmp_path):
    path = write_broken_files(tmp_path)["one_frame"]
    assert video_info(open_video(str(path))).num_frames == 1


def test_a_stream_over_the_pixel_cap_is_refused_from_its_header(tmp_path):
    path = write_video(tmp_path / "v.mp4", 3)  # 64 x 48 = 3,072 pixels
    assert len(open_video(str(path), max_pixels=64 * 48)) == 3
    assert len(open_video(str(path), width=32, height=24, max_pixels=None)) == 3
    with pytest.raises(VideoDecodeError) as error:
        open_video(str(path), width=32, height=24, max_pixels=64 * 48 - 1)
    assert str(error.value) == (
        f"{path}: frames of 64 x 48 = 3,072 pixels exceed the cap of 3,071 (ingest.max_pixels); downscale "
        "the video (e.g. `ffmpeg -i IN -vf scale=1920:-2 OUT`) or raise ingest.max_pixels")


def test_stream_size_reads_the_header_and_names_an_audio_only_file(tmp_path):
    assert stream_size(str(write_video(tmp_path / "v.mp4", 2, width=96, height=32))) == (96, 32)
    audio = write_audio_only(tmp_path / "a.mp4")
    with pytest.raises(VideoDecodeError, match="a.mp4: the container holds no video stream"):
        open_video(str(audio))
