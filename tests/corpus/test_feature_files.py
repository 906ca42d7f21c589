"""Feature files in the published layouts: finding, checking (headers, then values) and pooling, on small
hand-made arrays with exact expected values."""

from __future__ import annotations

import numpy as np
import pytest

from dualvad.corpus.feature_files import (
    load_features,
    pool_snippets,
    save_features,
    scan_features,
    stem_of,
)


def snippets(t: int, c: int = 1, d: int = 2, start: float = 0.0) -> np.ndarray:
    """float32 (T, C, D) counting up from ``start``: every value distinct, so pooling shows in the numbers."""
    return (start + np.arange(t * c * d, dtype=np.float32)).reshape(t, c, d)


def test_pooling_averages_snippets_into_segments_as_rtfm_does():
    features, bounds = pool_snippets(snippets(5), 2)
    # snippets [0, 2) and [2, 5): floor(i * 5 / 2) edges, their 16-frame spans
    assert features[:, 0].tolist() == [[1.0, 2.0], [6.0, 7.0]]
    assert bounds.tolist() == [[0, 32], [32, 80]]


def test_fewer_snippets_than_segments_repeat_a_snippet_inside_its_frames():
    features, bounds = pool_snippets(snippets(5), 8)
    # segment i takes snippet floor(5 i / 8) = 0 0 1 1 2 3 3 4; frames floor(80 i / 8)
    assert features[:, 0, 0].tolist() == [0.0, 0.0, 2.0, 2.0, 4.0, 6.0, 6.0, 8.0]
    assert bounds.tolist() == [[10 * i, 10 * i + 10] for i in range(8)]
    assert (bounds[:, 0] // 16).tolist() == [0, 0, 1, 1, 2, 3, 3, 4]  # each segment starts in its snippet
    # a known frame count (45 frames, 3 snippets): 8 equal segments of the frames, each its first frame's
    features, bounds = pool_snippets(snippets(3), 8, num_frames=45)
    assert bounds[:, 0].tolist() == [0, 5, 11, 16, 22, 28, 33, 39] and bounds[-1, 1] == 45
    assert features[:, 0, 0].tolist() == [0.0, 0.0, 0.0, 2.0, 2.0, 2.0, 4.0, 4.0]


def test_one_segment_per_snippet_ends_at_the_known_frame_count():
    features, bounds = pool_snippets(snippets(3), None, num_frames=40)
    assert features[:, 0].tolist() == snippets(3)[:, 0].tolist()
    assert bounds.tolist() == [[0, 16], [16, 32], [32, 40]]
    _, padded = pool_snippets(snippets(3), None)  # no frame count: 16 T
    assert padded[-1].tolist() == [32, 48]


def test_too_few_frames_are_errors_with_the_numbers():
    with pytest.raises(ValueError, match="1 snippets of a video of 16 frames cannot fill 32 segments"):
        pool_snippets(snippets(1), 32)
    with pytest.raises(ValueError, match="the video has 30 frames but .* starts at frame 32"):
        pool_snippets(snippets(3), None, num_frames=30)


def test_stems_keep_xd_violence_dots_and_drop_the_video_extension():
    assert stem_of("Abuse/Abuse001_x264.mp4") == "Abuse/Abuse001_x264"
    assert stem_of("A.Beautiful.Mind.2001__#00-25-20_00-29-20_label_A.mp4") == \
        "A.Beautiful.Mind.2001__#00-25-20_00-29-20_label_A"


def test_every_layout_reads_back_as_t_c_d(tmp_path):
    two = snippets(4, 2, 3)
    save_features(str(tmp_path), "Abuse/a.mp4", two, "crops")
    save_features(str(tmp_path), "b.mp4", two, "stacked")
    save_features(str(tmp_path), "c.mp4", snippets(4, 1, 3), "single")
    (tmp_path / "flat").mkdir()
    save_features(str(tmp_path / "flat"), "a.mp4", two, "crops")  # a published set: no category folders
    found = {v.video_id: v for v in scan_features(str(tmp_path), ["Abuse/a.mp4", "b.mp4"])}
    assert found["Abuse/a.mp4"].files == ("Abuse/a__0.npy", "Abuse/a__1.npy")  # by relative path first
    assert [(v.layout, v.shape) for v in found.values()] == [("crops", (4, 2, 3)), ("stacked", (4, 2, 3))]
    for video in found.values():
        np.testing.assert_array_equal(load_features(str(tmp_path), video), two)
    (single,) = scan_features(str(tmp_path), ["c.mp4"])
    assert (single.layout, single.shape) == ("single", (4, 1, 3))
    (flat,) = scan_features(str(tmp_path / "flat"), ["Abuse/a.mp4"])  # by its file name
    assert flat.files == ("a__0.npy", "a__1.npy")


def test_each_bad_video_gets_one_problem_naming_its_file(tmp_path):
    folder = str(tmp_path)
    for name in ("good", "nan", "short"):
        save_features(folder, f"{name}.mp4", snippets(3, 2, 4), "crops")
    save_features(folder, "missing_crop.mp4", snippets(3, 1, 4), "crops")  # only __0 of crops 0-1
    np.save(tmp_path / "wrong_shape__0.npy", np.zeros(8, np.float32))
    np.save(tmp_path / "wrong_shape__1.npy", np.zeros(8, np.float32))
    (tmp_path / "empty__0.npy").write_bytes(b"")
    np.save(tmp_path / "empty__1.npy", np.zeros((3, 4), np.float32))
    np.save(tmp_path / "ints__0.npy", np.zeros((3, 4), np.int64))
    np.save(tmp_path / "ints__1.npy", np.zeros((3, 4), np.int64))
    np.save(tmp_path / "other_dim__0.npy", np.zeros((3, 5), np.float32))
    np.save(tmp_path / "other_dim__1.npy", np.zeros((3, 5), np.float32))
    np.save(tmp_path / "uneven__0.npy", np.zeros((3, 4), np.float32))
    np.save(tmp_path / "uneven__1.npy", np.zeros((2, 4), np.float32))
    bad = snippets(3, 2, 4)
    bad[1, 1, 2] = np.nan
    save_features(folder, "nan.mp4", bad, "crops")
    ids = ["good.mp4", "nan.mp4", "missing_crop.mp4", "wrong_shape.mp4", "empty.mp4", "ints.mp4",
           "other_dim.mp4", "uneven.mp4", "absent.mp4"]
    problems = {v.video_id: v.problem for v in scan_features(folder, ids)}
    assert problems["good.mp4"] is None and problems["nan.mp4"] is None  # values are read later
    assert problems["missing_crop.mp4"] == \
        "missing crop file(s) missing_crop__1.npy (other videos have crops 0-1)"
    assert problems["wrong_shape.mp4"] == "wrong_shape__0.npy: shape (8,), expected (T, D)"
    assert problems["empty.mp4"].startswith("empty__0.npy: not a .npy array file")
    assert problems["ints.mp4"] == "ints__0.npy: dtype int64, expected floating point (float32)"
    assert problems["other_dim.mp4"] == \
        "other_dim__0.npy: 2 crops of dimension 5, the other videos have 2 of dimension 4"
    assert problems["uneven.mp4"] == ("its crops differ in snippets or dimension: uneven__0.npy (3, 4), "
                                      "uneven__1.npy (2, 4)")
    assert problems["absent.mp4"].startswith(f"no feature file under {folder} (looked for absent__0.npy or "
                                             "absent.npy")
    nan = next(v for v in scan_features(folder, ["nan.mp4"]))
    with pytest.raises(ValueError, match=r"nan__1.npy: 1 values are NaN or infinite \(the first at \(1, 2\)"):
        load_features(folder, nan)


def test_both_kinds_of_file_need_the_layout_named(tmp_path):
    save_features(str(tmp_path), "v.mp4", snippets(3, 2, 4), "crops")
    save_features(str(tmp_path), "v.mp4", snippets(3, 2, 4), "stacked")
    (auto,) = scan_features(str(tmp_path), ["v.mp4"])
    assert "name the layout with ingest.features_layout" in auto.problem
    (named,) = scan_features(str(tmp_path), ["v.mp4"], "stacked")
    assert (named.layout, named.files, named.problem) == ("stacked", ("v.npy",), None)
