"""Annotation readers and `read_corpus` on small hand-written files."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dualvad.corpus import CorpusFormatError, VideoRecord, read_corpus
from dualvad.corpus.annotations import (
    read_label_list,
    read_ucf_temporal,
    read_ucf_train_list,
    read_vera_eval,
    read_xd_violence,
    xd_label,
)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def make_corpus(root: Path, annotations: dict[str, str], videos: list[str]) -> Path:
    """A corpus folder with empty video files (the readers never open them)."""
    for name, text in annotations.items():
        write(root / "annotations" / name, text)
    for video in videos:
        write(root / "videos" / video, "")
    return root


def record(root: Path, video_id: str, label: str, split: str, intervals=None) -> VideoRecord:
    path = os.path.abspath(root / "videos" / video_id)
    return VideoRecord(video_id, path, label, split, intervals)


# --------------------------------------------------------------------------- label lists


def test_read_label_list_parses_paths_and_labels(tmp_path: Path) -> None:
    path = write(
        tmp_path / "train.txt",
        "# video label\n"
        "\n"
        "Fast/fast_0003.mp4 Speeding\n"
        "  ./Normal/a.avi   normal  \n"
        "Odd\\win.MKV Explosion\n",
    )
    assert read_label_list(path, "train") == {
        "Fast/fast_0003.mp4": "Speeding",
        "Normal/a.avi": "Normal",
        "Odd/win.MKV": "Explosion",
    }


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("Fast/a.mp4", "line has 1 field;"),
        ("Fast/a.mp4 Speeding extra", "3 fields"),
        ("Speeding Fast/a.mp4", "does not end with"),
        ("Fast/a.txt Speeding", "does not end with"),
        ("../a.mp4 Speeding", "not a relative path"),
        ("/abs/a.mp4 Speeding", "not a relative path"),
        ("first.mp4 Normal", "already listed on line 2"),
    ],
)
def test_read_label_list_names_file_and_line(tmp_path: Path, line: str, fragment: str) -> None:
    path = write(tmp_path / "test.txt", f"# header\nfirst.mp4 Normal\n{line}\n")
    with pytest.raises(CorpusFormatError) as err:
        read_label_list(path, "test")
    message = str(err.value)
    assert "test.txt:3" in message
    assert fragment in message
    assert "expected `<relative video path> <label>`" in message


def test_an_unknown_label_names_file_line_and_the_valid_labels(tmp_path: Path) -> None:
    path = write(tmp_path / "test.txt", "a.mp4 Normal\nb.mp4 Unknown\n")
    with pytest.raises(CorpusFormatError) as err:
        read_label_list(path, "test")
    message = str(err.value)
    assert message.startswith(f"{path}:2: unknown label 'Unknown'; expected Normal, unlabelled or an anomaly "
                              "category: Abnormal, Abuse, Anomaly, Arrest, Arson, Assault, Burglary, "
                              "Car accident, Collision, Defocus, Explosion, Fighting, Flash, FrozenFrame, "
                              "Intrusion, LensCover, Pasted, Riot, RoadAccidents, Robbery, Scattering, "
                              "SceneCut, Shooting, Shoplifting, Speeding, Stealing, Vandalism (")
    assert "ingest.categories" in message


def test_labels_are_matched_in_any_case_and_a_corpus_may_add_its_own_categories(tmp_path: Path) -> None:
    path = write(tmp_path / "train.txt", "a.mp4 NORMAL\nb.mp4 road_accidents\nc.mp4 UNLABELLED\n"
                 "d.mp4 loitering\n")
    with pytest.raises(CorpusFormatError, match=r"train.txt:4: unknown label 'loitering'"):
        read_label_list(path, "train")
    assert read_label_list(path, "train", categories=["Loitering"]) == {
        "a.mp4": "Normal", "b.mp4": "RoadAccidents", "c.mp4": "unlabelled", "d.mp4": "Loitering"}


def test_read_ucf_temporal_refuses_an_unknown_class(tmp_path: Path) -> None:
    path = write(tmp_path / "temporal.txt", "Abuse028_x264.mp4  Abuse  165  240  -1  -1\n"
                 "x.mp4  Crime  1  5  -1  -1\n")
    with pytest.raises(CorpusFormatError, match=r"temporal.txt:2: unknown label 'Crime'; expected Normal"):
        read_ucf_temporal(path)
    assert read_ucf_temporal(path, categories=("Crime",))["x.mp4"] == ("Crime", ((1, 5),))


def test_read_label_list_missing_file_and_bad_split(tmp_path: Path) -> None:
    with pytest.raises(CorpusFormatError, match="nope.txt: file not found"):
        read_label_list(tmp_path / "nope.txt", "train")
    with pytest.raises(ValueError, match="split must be one of"):
        read_label_list(tmp_path / "nope.txt", "val")


# --------------------------------------------------------------------------- UCF-Crime


def test_read_ucf_temporal_parses_intervals(tmp_path: Path) -> None:
    path = write(
        tmp_path / "temporal.txt",
        "Abuse028_x264.mp4  Abuse  165  240  -1  -1\n"
        "Arrest001_x264.mp4  Arrest  1185  1485  -1  -1\n"
        "Burglary005_x264.mp4  Burglary  4710  5040  -1  -1  \n"
        "Explosion008_x264.mp4  Explosion  2000  2100  100  300\n"
        "Normal_Videos_003_x264.mp4  Normal  -1  -1  -1  -1\n"
        "Shooting/two.mp4 Shooting\n",
    )
    assert read_ucf_temporal(path) == {
        "Abuse028_x264.mp4": ("Abuse", ((165, 240),)),
        "Arrest001_x264.mp4": ("Arrest", ((1185, 1485),)),
        "Burglary005_x264.mp4": ("Burglary", ((4710, 5040),)),
        "Explosion008_x264.mp4": ("Explosion", ((100, 300), (2000, 2100))),
        "Normal_Videos_003_x264.mp4": ("Normal", ()),
        "Shooting/two.mp4": ("Shooting", ()),
    }


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("a.mp4", "1 field"),
        ("a.mp4 Abuse 10 20 30", "odd number of frame indices (3)"),
        ("a.mp4 Abuse 20 10 -1 -1", "start 20 is not before end 10"),
        ("a.mp4 Abuse 20 20 -1 -1", "start 20 is not before end 20"),
        ("a.mp4 Abuse 10 x -1 -1", "'x' is not an integer"),
        ("a.mp4 Abuse -1 10 -1 -1", "negative frame index"),
        ("a.mp4 Normal 10 20 -1 -1", "a Normal video has anomaly intervals"),
        ("ok.mp4 Abuse -1 -1 -1 -1", "'ok.mp4' already listed on line 1"),
    ],
)
def test_read_ucf_temporal_errors_name_file_and_line(
    tmp_path: Path, line: str, fragment: str
) -> None:
    path = write(tmp_path / "temporal.txt", f"ok.mp4 Abuse 1 2 -1 -1\n\n{line}\n")
    with pytest.raises(CorpusFormatError) as err:
        read_ucf_temporal(path)
    assert "temporal.txt:3" in str(err.value)
    assert fragment in str(err.value)


def test_read_ucf_train_list_labels_from_folders(tmp_path: Path) -> None:
    path = write(
        tmp_path / "Anomaly_Train.txt",
        "Abuse/Abuse001_x264.mp4\n"
        "Road_Accidents/RoadAccidents001_x264.mp4\n"
        "Training_Normal_Videos_Anomaly/Normal_Videos001_x264.mp4\n"
        "Testing_Normal_Videos_Anomaly/Normal_Videos_003_x264.mp4\n",
    )
    assert read_ucf_train_list(path) == {
        "Abuse/Abuse001_x264.mp4": "Abuse",
        "Road_Accidents/RoadAccidents001_x264.mp4": "RoadAccidents",  # the temporal file's class name
        "Training_Normal_Videos_Anomaly/Normal_Videos001_x264.mp4": "Normal",
        "Testing_Normal_Videos_Anomaly/Normal_Videos_003_x264.mp4": "Normal",
    }


def test_read_ucf_train_list_needs_a_folder(tmp_path: Path) -> None:
    path = write(tmp_path / "Anomaly_Train.txt", "Abuse/Abuse001_x264.mp4\nAbuse002_x264.mp4\n")
    with pytest.raises(CorpusFormatError, match=r"Anomaly_Train.txt:2: .* has no category folder"):
        read_ucf_train_list(path)


# --------------------------------------------------------------------------- XD-Violence


@pytest.mark.parametrize(
    ("name", "label"),
    [
        ("A.Beautiful.Mind.2001__#00-25-20_00-29-20_label_A", "Normal"),
        ("Bad.Boys.1995__#01-11-55_01-12-40_label_B1-0-0", "Fighting"),
        ("v=wVey5JDRf_g__#1_label_B2-G-0", "Shooting"),
        ("x_label_B4-0-0", "Riot"),
        ("x_label_B5-0-0", "Abuse"),
        ("x_label_B6-0-0", "Car accident"),
        ("x_label_G-B2-0.mp4", "Explosion"),
    ],
)
def test_xd_label_uses_first_code(name: str, label: str) -> None:
    assert xd_label(name) == label


def test_read_xd_violence(tmp_path: Path) -> None:
    path = write(
        tmp_path / "annotations.txt",
        "Bad.Boys.1995__#01-11-55_01-12-40_label_B1-0-0 30 95 200 260\n"
        "v=wVey5JDRf_g__#1_label_G-0-0 500 600\n"
        "Listed.Without.Frames__#1_label_B2-0-0\n"
        "Quiet__#1_label_A\n",
    )
    assert read_xd_violence(path) == {
        "Bad.Boys.1995__#01-11-55_01-12-40_label_B1-0-0": ("Fighting", ((30, 95), (200, 260))),
        "v=wVey5JDRf_g__#1_label_G-0-0": ("Explosion", ((500, 600),)),
        "Listed.Without.Frames__#1_label_B2-0-0": ("Shooting", ()),
        "Quiet__#1_label_A": ("Normal", ()),
    }


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("no_code_here 1 2", "has no `label_<code>` part"),
        ("x_label_Z9-0-0 1 2", "unknown label code 'Z9'"),
        ("x_label_B1-0-0 1 2 3", "odd number of frame indices"),
        ("x_label_B1-0-0 5 2", "start 5 is not before end 2"),
        ("x_label_A 1 2", "label_A (Normal) video has anomaly intervals"),
    ],
)
def test_read_xd_violence_errors(tmp_path: Path, line: str, fragment: str) -> None:
    path = write(tmp_path / "annotations.txt", f"# XD\n{line}\n")
    with pytest.raises(CorpusFormatError) as err:
        read_xd_violence(path)
    assert "annotations.txt:2" in str(err.value)
    assert fragment in str(err.value)


# --------------------------------------------------------------------------- read_corpus

FOLDER_VIDEOS = [
    "Fast/fast_0001.mp4",
    "Fast/fast_0002.mp4",
    "Normal/n_0001.mp4",
    "Normal/n_0002.mp4",
    "Boom/boom_0003.mp4",
]


def folder_corpus(root: Path, temporal: str | None = None) -> Path:
    annotations = {
        "train.txt": "Fast/fast_0001.mp4 Speeding\nNormal/n_0001.mp4 Normal\n",
        "test.txt": "Normal/n_0002.mp4 Normal\nFast/fast_0002.mp4 Speeding\n"
        "Boom/boom_0003.mp4 Explosion\n",
    }
    if temporal is not None:
        annotations["test_temporal.txt"] = temporal
    return make_corpus(root, annotations, FOLDER_VIDEOS)


def test_read_corpus_folder_layout(tmp_path: Path) -> None:
    root = folder_corpus(
        tmp_path,
        "fast_0002.mp4  Speeding  10  20  30  45\n"  # matched by basename
        "Normal/n_0002.mp4  Normal  -1  -1  -1  -1\n",  # matched by relative path
    )
    assert read_corpus(root) == [
        record(root, "Boom/boom_0003.mp4", "Explosion", "test", None),
        record(root, "Fast/fast_0002.mp4", "Speeding", "test", ((10, 20), (30, 45))),
        record(root, "Normal/n_0002.mp4", "Normal", "test", ()),
        record(root, "Fast/fast_0001.mp4", "Speeding", "train", None),
        record(root, "Normal/n_0001.mp4", "Normal", "train", None),
    ]
    records = read_corpus(str(root))
    assert [r.is_anomalous for r in records] == [True, True, False, True, False]
    assert all(os.path.isabs(r.path) for r in records)


def test_read_corpus_with_only_a_test_list(tmp_path: Path) -> None:
    root = make_corpus(tmp_path, {"test.txt": "a.webm Normal\n"}, ["a.webm"])
    assert read_corpus(root) == [record(root, "a.webm", "Normal", "test")]


def test_read_corpus_lists_missing_videos(tmp_path: Path) -> None:
    names = [f"v{i}.mp4" for i in range(8)]
    lines = "".join(f"{n} Normal\n" for n in names)
    root = make_corpus(tmp_path, {"train.txt": lines}, names[:1])
    with pytest.raises(CorpusFormatError) as err:
        read_corpus(root)
    message = str(err.value)
    assert "7 listed videos are missing" in message
    assert "v1.mp4, v2.mp4, v3.mp4, v4.mp4, v5.mp4 (and 2 more)" in message
    assert "v6.mp4" not in message


def test_read_corpus_temporal_entry_must_be_listed(tmp_path: Path) -> None:
    root = folder_corpus(tmp_path, "ghost.mp4 Speeding 1 5 -1 -1\n")
    with pytest.raises(CorpusFormatError, match=r"test_temporal.txt: video 'ghost.mp4' is not"):
        read_corpus(root)


def test_read_corpus_temporal_train_video_is_not_a_test_video(tmp_path: Path) -> None:
    root = folder_corpus(tmp_path, "fast_0001.mp4 Speeding 1 5 -1 -1\n")
    with pytest.raises(CorpusFormatError, match="not listed in the test list"):
        read_corpus(root)


def test_read_corpus_temporal_label_must_agree(tmp_path: Path) -> None:
    root = folder_corpus(tmp_path, "boom_0003.mp4 Collision 1 5 -1 -1\n")
    with pytest.raises(CorpusFormatError, match="class 'Collision' but the test list labels it"):
        read_corpus(root)


def test_read_corpus_ambiguous_basename(tmp_path: Path) -> None:
    root = make_corpus(
        tmp_path,
        {"test.txt": "A/x.mp4 Explosion\nB/x.mp4 Explosion\n", "test_temporal.txt": "x.mp4 Explosion 1 2\n"},
        ["A/x.mp4", "B/x.mp4"],
    )
    with pytest.raises(CorpusFormatError, match="matches several videos by name"):
        read_corpus(root)


def test_read_corpus_video_in_both_splits(tmp_path: Path) -> None:
    root = make_corpus(
        tmp_path, {"train.txt": "a.mp4 Normal\n", "test.txt": "a.mp4 Normal\n"}, ["a.mp4"]
    )
    with pytest.raises(CorpusFormatError, match="listed in both the train and the test list"):
        read_corpus(root)


def test_read_corpus_without_annotations_names_the_files(tmp_path: Path) -> None:
    (tmp_path / "videos").mkdir()
    with pytest.raises(CorpusFormatError) as err:
        read_corpus(tmp_path)
    message = str(err.value)
    assert "train.txt" in message and "test.txt" in message
    assert "Anomaly_Train.txt" in message


def test_read_corpus_real_ucf_crime_layout(tmp_path: Path) -> None:
    root = make_corpus(
        tmp_path,
        {
            "Anomaly_Train.txt": "Abuse/Abuse001_x264.mp4\n"
            "Training_Normal_Videos_Anomaly/Normal_Videos001_x264.mp4\n",
            "Temporal_Anomaly_Annotation_for_Testing_Videos.txt": (
                "Abuse028_x264.mp4  Abuse  165  240  -1  -1\n"
                "Normal_Videos_003_x264.mp4  Normal  -1  -1  -1  -1\n"
            ),
        },
        [
            "Abuse/Abuse001_x264.mp4",
            "Abuse/Abuse028_x264.mp4",
            "Training_Normal_Videos_Anomaly/Normal_Videos001_x264.mp4",
            "Testing_Normal_Videos_Anomaly/Normal_Videos_003_x264.mp4",
        ],
    )
    assert read_corpus(root) == [
        record(root, "Abuse/Abuse028_x264.mp4", "Abuse", "test", ((165, 240),)),
        record(
            root, "Testing_Normal_Videos_Anomaly/Normal_Videos_003_x264.mp4", "Normal", "test", ()
        ),
        record(root, "Abuse/Abuse001_x264.mp4", "Abuse", "train"),
        record(root, "Training_Normal_Videos_Anomaly/Normal_Videos001_x264.mp4", "Normal", "train"),
    ]


def test_read_corpus_ucf_test_video_not_on_disk(tmp_path: Path) -> None:
    root = make_corpus(
        tmp_path,
        {"Temporal_Anomaly_Annotation_for_Testing_Videos.txt": "Gone_x264.mp4 Abuse 1 9 -1 -1\n"},
        [],
    )
    with pytest.raises(CorpusFormatError, match="1 listed videos are missing .*Gone_x264.mp4"):
        read_corpus(root)


def test_video_record_rejects_unknown_split() -> None:
    with pytest.raises(ValueError, match="split must be one of"):
        VideoRecord("a.mp4", "/a.mp4", "Normal", "val", None)
    assert not VideoRecord("a.mp4", "/a.mp4", "Normal", "test", ()).is_anomalous
    assert VideoRecord("a.mp4", "/a.mp4", "Riot", "test", None).is_anomalous
    unlabelled = VideoRecord("a.mp4", "/a.mp4", "unlabelled", "test", None)
    assert (unlabelled.is_anomalous, unlabelled.is_labelled) == (False, False)
    assert VideoRecord("a.mp4", "/a.mp4", "Normal", "test", None).is_labelled


def test_read_corpus_of_unannotated_videos_labels_every_video_unlabelled(tmp_path: Path) -> None:
    # a folder with videos/ and no annotations/
    root = make_corpus(tmp_path / "own", {}, ["cam1/a.mp4", "b.MOV", "notes.txt"])
    assert read_corpus(root) == [record(root, "b.MOV", "unlabelled", "test"),
                                 record(root, "cam1/a.mp4", "unlabelled", "test")]
    # a plain folder of videos: their ids are relative to it
    plain = tmp_path / "plain"
    for name in ("x.mp4", "sub/y.webm"):
        write(plain / name, "")
    assert read_corpus(plain) == [
        VideoRecord("sub/y.webm", os.path.abspath(plain / "sub/y.webm"), "unlabelled", "test"),
        VideoRecord("x.mp4", os.path.abspath(plain / "x.mp4"), "unlabelled", "test")]
    assert not any(r.is_anomalous or r.is_labelled for r in read_corpus(plain))


def test_read_corpus_of_a_folder_without_videos_or_annotations_says_what_it_wants(tmp_path: Path) -> None:
    write(tmp_path / "readme.txt", "")
    with pytest.raises(CorpusFormatError) as err:
        read_corpus(tmp_path)
    assert str(err.value).startswith(f"{tmp_path}: no annotations/ folder and no video file (.mp4, .avi, "
                                     f".mkv, .mov, .webm) under {tmp_path}; put your videos there")
    with pytest.raises(CorpusFormatError, match="no such corpus folder"):
        read_corpus(tmp_path / "missing")
    (tmp_path / "annotations").mkdir()  # an empty annotations/ is a mistake, not an unlabelled corpus
    write(tmp_path / "videos" / "a.mp4", "")
    with pytest.raises(CorpusFormatError, match="no annotation lists found; .* the empty annotations/"):
        read_corpus(tmp_path)


def test_corpus_package_imports_neither_ray_nor_av() -> None:
    code = "import sys, dualvad.corpus; print(sorted({'ray', 'av'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------------------- UCF_Eval.json (VERA)

VERA_EVAL = json.dumps([
    {"video": "frames/Abuse/Abuse028_x264.mp4", "temporal_label": [165, 240, -1, -1], "length": 1412,
     "QA": [{"q": "Is there any anomaly in the video?", "a": "Yes."}]},
    {"video": "frames/Vandalism/Vandalism036_x264.mp4", "temporal_label": [990, 1080, 540, 780],
     "length": 1443},
    {"video": "frames/Normal/Normal_Videos_003_x264.mp4", "temporal_label": [-1, -1, -1, -1], "length": 2822},
])


def test_read_vera_eval_labels_intervals_and_lengths(tmp_path: Path) -> None:
    temporal, lengths = read_vera_eval(write(tmp_path / "UCF_Eval.json", VERA_EVAL))
    assert temporal == {
        "frames/Abuse/Abuse028_x264.mp4": ("Abuse", ((165, 240),)),
        "frames/Vandalism/Vandalism036_x264.mp4": ("Vandalism", ((540, 780), (990, 1080))),
        "frames/Normal/Normal_Videos_003_x264.mp4": ("Normal", ()),
    }
    assert lengths == {"frames/Abuse/Abuse028_x264.mp4": 1412, "frames/Vandalism/Vandalism036_x264.mp4": 1443,
                       "frames/Normal/Normal_Videos_003_x264.mp4": 2822}


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("{}", "the top level is a dict"),
        ("[1, 2", "not JSON"),
        ('[{"video": "frames/Arson/a.mp4", "length": 10}]', "entry 0: not an object with `video`"),
        ('[{"video": "frames/Arson/a.mp4", "temporal_label": [1, 5], "length": 0}]', "`length` 0"),
        ('[{"video": "frames/Arson/a.mp4", "temporal_label": [5, 1], "length": 9}]', "start 5 is not before"),
        ('[{"video": "frames/Arson/a.mp4", "temporal_label": [1, "x"], "length": 9}]', "not a list of frame"),
        ('[{"video": "a.mp4", "temporal_label": [1, 5], "length": 9}]', "has no category folder"),
        ('[{"video": "frames/Normal/n.mp4", "temporal_label": [1, 5], "length": 9}]', "Normal video"),
        ('[{"video": "frames/Boom/b.mp4", "temporal_label": [1, 5], "length": 9}]',
         "entry 0: unknown label 'Boom'; expected Normal, unlabelled or an anomaly category: Abnormal,"),
        ('[{"video": "f/Arson/a.mp4", "temporal_label": [], "length": 9}, '
         '{"video": "f/Arson/a.mp4", "temporal_label": [], "length": 9}]',
         "entry 1: 'f/Arson/a.mp4' already"),
    ],
)
def test_read_vera_eval_errors_name_file_and_entry(tmp_path: Path, text: str, fragment: str) -> None:
    path = write(tmp_path / "UCF_Eval.json", text)
    with pytest.raises(CorpusFormatError, match=re.escape(fragment)) as error:
        read_vera_eval(path)
    assert str(path) in str(error.value)


def test_read_corpus_takes_ucf_eval_json_for_the_temporal_file(tmp_path: Path) -> None:
    # UCF-Crime layout: the test videos are UCF_Eval.json's, found under videos/ by file name
    videos = ["Abuse/Abuse028_x264.mp4", "Vandalism/Vandalism036_x264.mp4",
              "Testing_Normal_Videos_Anomaly/Normal_Videos_003_x264.mp4"]
    root = make_corpus(tmp_path / "ucf", {"UCF_Eval.json": VERA_EVAL}, videos)
    records = read_corpus(root)
    assert [(r.video_id, r.label, r.intervals, r.annotated_frames) for r in records] == [
        ("Abuse/Abuse028_x264.mp4", "Abuse", ((165, 240),), 1412),
        ("Testing_Normal_Videos_Anomaly/Normal_Videos_003_x264.mp4", "Normal", (), 2822),
        ("Vandalism/Vandalism036_x264.mp4", "Vandalism", ((540, 780), (990, 1080)), 1443),
    ]
    # folder layout: matched onto test.txt by path, else file name; videos it does not name get None
    labels = ["Abuse", "Vandalism", "Normal"]
    test = "".join(f"{video} {label}\n" for video, label in zip(videos, labels, strict=True))
    root = make_corpus(tmp_path / "folder", {"test.txt": test + "Abuse/extra.mp4 Abuse\n",
                                             "UCF_Eval.json": VERA_EVAL}, [*videos, "Abuse/extra.mp4"])
    frames = {r.video_id: r.annotated_frames for r in read_corpus(root)}
    assert frames == {"Abuse/Abuse028_x264.mp4": 1412, "Abuse/extra.mp4": None,
                      "Testing_Normal_Videos_Anomaly/Normal_Videos_003_x264.mp4": 2822,
                      "Vandalism/Vandalism036_x264.mp4": 1443}


def test_read_corpus_refuses_two_temporal_sources(tmp_path: Path) -> None:
    root = make_corpus(tmp_path, {"test.txt": "Abuse/Abuse028_x264.mp4 Abuse\n", "UCF_Eval.json": VERA_EVAL,
                                  "test_temporal.txt": "Abuse028_x264.mp4 Abuse 1 9 -1 -1\n"},
                       ["Abuse/Abuse028_x264.mp4"])
    with pytest.raises(CorpusFormatError, match="both test_temporal.txt and UCF_Eval.json"):
        read_corpus(root)
