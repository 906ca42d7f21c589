"""GopReader: the frames asked for, from only the GOP prefixes they need, with decord's numbering."""

import numpy as np
import pytest

from dualvad.video import gop
from dualvad.video.decode import VideoDecodeError, open_video, read_frames
from dualvad.video.gop import GopReader

from media import frame_level, write_broken_files, write_rotated, write_video

FRAMES = 300  # x264's defaults (B-frames); the moving bar makes it start a GOP every ~16 frames


@pytest.fixture(scope="module")
def long_gop(tmp_path_factory) -> str:
    return str(write_video(tmp_path_factory.mktemp("gop") / "v.mp4", FRAMES))


def test_numbering_and_keyframes_are_decords(long_gop):
    decord_reader = open_video(long_gop)
    with GopReader(long_gop) as reader:
        assert len(reader) == len(decord_reader) == FRAMES
        assert reader.keyframes.tolist() == list(decord_reader.get_key_indices())
        assert 10 < len(reader.keyframes) < 30
        assert reader.fps == decord_reader.get_avg_fps() == 15.0
        assert (reader.width, reader.height) == (64, 48)


def test_frames_in_any_order_with_repeats_match_decords_pixels(long_gop):
    asked = np.array([260, 3, 3, 0, 249, 1])
    with GopReader(long_gop) as reader:
        frames = reader.read(asked)
    assert frames.shape == (6, 48, 64, 3) and frames.dtype == np.uint8
    decord_frames = read_frames(open_video(long_gop), np.sort(np.unique(asked)), long_gop)
    by_index = dict(zip(np.sort(np.unique(asked)).tolist(), decord_frames, strict=True))
    for frame, index in zip(frames, asked.tolist(), strict=True):
        assert np.array_equal(frame, by_index[index])  # full size: the same decoder, the same pixels
        assert frame[:, index % 64].mean() > 240 and abs(int(np.median(frame)) - frame_level(index)) <= 3


def test_decodes_only_the_prefix_of_the_gops_it_needs(long_gop):
    with GopReader(long_gop) as reader:
        keys = reader.keyframes.tolist()
        reader.read(np.array([keys[-2] + 1]))  # one GOP: its keyframe, then the frame after it
        one = reader.frames_decoded
        reader.read(np.array([0, 1, keys[8] + 3]))  # two GOPs, none of the GOPs between them
        two = reader.frames_decoded - one
    # a B-frame is decoded after the reference frame shown after it: a few frames past the target at most
    assert 2 <= one <= 2 + 3
    assert 4 <= two <= 2 + 4 + 2 * 3  # the 3 frames and the second keyframe; non-reference ones skipped
    with GopReader(long_gop) as reader:
        reader.read(np.arange(FRAMES), 64, 48)  # the size given: no first frame decoded to read the rotation
        assert reader.frames_decoded == FRAMES  # every frame exactly once: consecutive GOPs without a seek


def test_resizes_to_decords_pixels_exactly(long_gop):
    asked = np.array([0, 7, 120])
    with GopReader(long_gop) as reader:
        small, large = reader.read(asked, 32, 24), reader.read(asked, 112, 84)
    assert small.shape == (3, 24, 32, 3) and large.shape == (3, 84, 112, 3)
    assert np.array_equal(small, read_frames(open_video(long_gop, width=32, height=24), asked, long_gop))
    assert np.array_equal(large, read_frames(open_video(long_gop, width=112, height=84), asked, long_gop))


def test_bad_indices_and_files_name_the_file(long_gop, tmp_path):
    with GopReader(long_gop) as reader, pytest.raises(VideoDecodeError, match=f"{long_gop}: frames 0..300"):
        reader.read(np.array([0, FRAMES]))
    broken = write_broken_files(tmp_path)
    for kind, reason in (("empty", "0 bytes"), ("text", "not a decodable video"),
                         ("truncated", "truncated, corrupt")):
        with pytest.raises(VideoDecodeError, match=reason) as error:
            GopReader(str(broken[kind]))
        assert str(broken[kind]) in str(error.value)
    with pytest.raises(VideoDecodeError, match="does not exist"):
        GopReader(str(tmp_path / "nope.mp4"))


def test_a_rotated_video_comes_out_upright_as_decord_turns_it(long_gop, tmp_path):
    rotated = str(write_rotated(write_video(tmp_path / "upright.mp4", 20), tmp_path / "rotated.mp4"))
    with GopReader(rotated) as reader:
        assert (reader.rotation, reader.width, reader.height) == (90, 48, 64)
        ours = reader.read(np.array([4, 9]), 42, 56)  # the benchmark size of the hostile corpus test
    theirs = read_frames(open_video(rotated, width=42, height=56), np.array([4, 9]), rotated)
    assert ours.shape == theirs.shape == (2, 56, 42, 3)
    assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 8


def test_kept_frames_come_from_the_walk_that_decoded_them_with_the_same_pixels(long_gop, tmp_path,
                                                                             monkeypatch):
    with GopReader(long_gop) as reader:
        keys = reader.keyframes.tolist()
    kept, unread = [keys[3] + 2, keys[5] + 4], keys[7] + 1  # the first walk decodes kept, not unread's GOP
    for longest, size, budget in ((112, (112, 84), gop.KEEP_DECODED_BYTES), (32, (32, 24), 0)):
        monkeypatch.setattr(gop, "KEEP_DECODED_BYTES", budget)  # held as decoded; past the budget: converted
        with GopReader(long_gop) as reader:
            reader.keep(np.array([*kept, unread]), longest)
            reader.read(np.array([keys[3], *kept, keys[5]]), 16, 12)  # the features' walk, another size
            walked = reader.frames_decoded
            again = reader.read(np.array(kept), *size)  # the kept size
            assert reader.frames_decoded == walked  # from memory, nothing decoded
            reader.read(np.array([unread]), *size)
            assert reader.frames_decoded > walked  # not decoded by a walk, so not held: decoded now
        with GopReader(long_gop) as fresh:
            assert np.array_equal(again, fresh.read(np.array(kept), *size))
    rotated = str(write_rotated(write_video(tmp_path / "upright.mp4", 20), tmp_path / "rotated.mp4"))
    with GopReader(rotated) as reader:
        reader.keep(np.array([4]), 56)
        reader.read(np.array([4]), 6, 8)
        walked = reader.frames_decoded
        upright = reader.read(np.array([4]), 42, 56)  # portrait: 56 is the height
        assert reader.frames_decoded == walked
    with GopReader(rotated) as fresh:
        assert np.array_equal(upright, fresh.read(np.array([4]), 42, 56))
