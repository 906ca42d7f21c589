"""The UCF-like timing corpus: lengths, sizes, and x264's default GOP in the files."""

import math

import av
import pytest

from dualvad.corpus import read_corpus
from dualvad.corpus.ucf_like import (
    UcfLikeSpec,
    generate_ucf_like,
    triangular_quantile,
    video_minutes,
    video_specs,
)
from dualvad.errors import SettingError
from dualvad.video.gop import GopReader


def test_triangular_quantiles():
    assert triangular_quantile(0.0, 1, 3, 8) == 1.0
    assert triangular_quantile(1.0, 1, 3, 8) == 8.0
    assert triangular_quantile(2 / 7, 1, 3, 8) == pytest.approx(3.0)  # the CDF at the mode is 2/7
    assert triangular_quantile(0.5, 1, 3, 8) == pytest.approx(8 - math.sqrt(17.5))


def test_lengths_spread_from_1_to_8_minutes_with_mean_4_then_the_hd_ones():
    minutes = video_minutes(UcfLikeSpec())
    assert len(minutes) == 18 and minutes[16:] == [4.0, 4.0]
    assert 1.0 < min(minutes[:16]) < 1.7 and 6.7 < max(minutes[:16]) < 8.0
    assert sum(minutes[:16]) / 16 == pytest.approx(4.0, abs=0.05)
    assert video_minutes(UcfLikeSpec(scale=0.5))[16:] == [2.0, 2.0]
    specs = video_specs(UcfLikeSpec(videos=2, hd_videos=1))
    assert [(s.width, s.height, s.fps) for s, _ in specs] == [(320, 240, 30)] * 2 + [(1280, 720, 30)]
    assert [p.video_id for _, p in specs] == ["Speeding/speeding_0000.mp4", "Normal/normal_0001.mp4",
                                              "Collision/collision_0002.mp4"]


def test_a_bad_spec_names_the_key():
    with pytest.raises(SettingError, match="mode_minutes"):
        UcfLikeSpec(mode_minutes=9.0)


def test_generated_videos_have_x264s_default_gop_and_b_frames(tmp_path):
    spec = UcfLikeSpec(videos=1, hd_videos=0, min_minutes=0.15, mode_minutes=0.15, max_minutes=0.15)
    records = generate_ucf_like(tmp_path, spec)
    assert records == read_corpus(tmp_path) and len(records) == 1
    path = str(tmp_path / "videos" / records[0].video_id)
    with GopReader(path) as reader:
        assert (len(reader), reader.fps, reader.width, reader.height) == (270, 30.0, 320, 240)
        assert reader.keyframes.tolist() == [0, 250]
    with av.open(path) as container:
        stamps = [p.pts for p in container.demux(container.streams.video[0]) if p.pts is not None]
    assert stamps != sorted(stamps)  # B-frames: decoded before the frames they are shown after
