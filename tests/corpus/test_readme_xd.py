"""docs/datasets.md's XD-Violence conversion script, run as printed, gives a corpus `read_corpus` reads."""

from __future__ import annotations

import os
import re
import runpy
from pathlib import Path

import pytest

from dualvad.corpus import VideoRecord, read_corpus

DATASETS = Path(__file__).resolve().parents[2] / "docs" / "datasets.md"

# XD-Violence names (the label codes after `label_`) and its annotation format: `<video> s1 e1 [s2 e2 ...]`.
TRAIN = ["Bad.Boys.1995__#01-11-55_01-12-40_label_G-B2-B6",
         "A.Beautiful.Mind.2001__#00-25-20_00-29-20_label_A", "v=abc123__#1_label_B6-0-0"]
TEST = ["Black.Hawk.Down.2001__#01-05-10_01-06-35_label_B2-0-0", "v=xyz__#1_label_B6-0-0",
        "Bad.Boys.II.2003__#00-05-00_00-06-00_label_A"]
ANNOTATIONS = (f"{TEST[0]} 10 90 120 200\n"
               f"{TEST[1]} 0 50\n")


def readme_xd_script() -> str:
    """The Python block of docs/datasets.md's XD-Violence steps, without the list item's 3-space indent."""
    section = DATASETS.read_text(encoding="utf-8").split("\n## XD-Violence\n", 1)[1]
    block = re.search(r"\n   ```python\n(.*?)\n   ```\n", section, re.S)
    assert block, "docs/datasets.md: the XD-Violence steps lost their ```python block"
    return "\n".join(line[3:] for line in block.group(1).splitlines()) + "\n"


def test_readme_xd_violence_script_makes_a_readable_corpus(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    videos = tmp_path / "corpus" / "videos"
    for split, names in (("train", TRAIN), ("test", TEST)):
        (videos / split).mkdir(parents=True)
        for name in names:
            (videos / split / f"{name}.mp4").write_bytes(b"")  # the readers never open a video
    (tmp_path / "corpus" / "annotations").mkdir()
    (tmp_path / "corpus" / "annotations" / "annotations.txt").write_text(ANNOTATIONS)
    script = tmp_path / "xd_to_corpus.py"
    script.write_text(readme_xd_script())
    monkeypatch.chdir(tmp_path)  # the page says: run it in the folder holding corpus/
    runpy.run_path(str(script), run_name="__main__")

    def record(video_id: str, label: str, split: str, intervals=None) -> VideoRecord:
        return VideoRecord(video_id, os.path.abspath(videos / video_id), label, split, intervals)

    assert read_corpus(tmp_path / "corpus") == [
        record(f"test/{TEST[2]}.mp4", "Normal", "test", ()),
        record(f"test/{TEST[0]}.mp4", "Shooting", "test", ((10, 90), (120, 200))),
        record(f"test/{TEST[1]}.mp4", "Car accident", "test", ((0, 50),)),
        record(f"train/{TRAIN[1]}.mp4", "Normal", "train"),
        record(f"train/{TRAIN[0]}.mp4", "Explosion", "train"),
        record(f"train/{TRAIN[2]}.mp4", "Car accident", "train"),
    ]
