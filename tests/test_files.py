"""The one atomic writer (local disk; object storage is in test_objectstore.py) and the one file-name
sanitiser."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from dualvad.files import TEMP_PREFIX, safe_name, safe_names, write_atomic


def test_write_atomic_writes_bytes_into_a_new_folder_and_replaces_a_file(tmp_path: Path):
    target = tmp_path / "new" / "folder" / "page.html"
    assert write_atomic(target, b"first") == str(target)
    write_atomic(target, b"second")
    assert target.read_bytes() == b"second"
    assert sorted(p.name for p in target.parent.iterdir()) == ["page.html"]


def test_write_atomic_hands_a_writer_a_temporary_name_in_the_same_folder(tmp_path: Path):
    seen: list[str] = []

    def writer(path: str) -> None:
        seen.append(path)
        pq.write_table(pa.table({"x": [1, 2]}), path, filesystem=pafs.LocalFileSystem())

    write_atomic(tmp_path / "part-0.parquet", writer, pafs.LocalFileSystem())
    [temp] = seen
    assert Path(temp).parent == tmp_path
    assert Path(temp).name.startswith(TEMP_PREFIX) and temp.endswith("-part-0.parquet")
    assert pq.read_table(tmp_path / "part-0.parquet").column("x").to_pylist() == [1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["part-0.parquet"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path):
    target = tmp_path / "table.parquet"
    target.write_bytes(b"old")

    def half(path: str) -> None:
        Path(path).write_bytes(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_atomic(target, half)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["table.parquet"]


def test_safe_name_exact_values():
    assert safe_name("vlm/focused", "-") == "vlm-focused"
    assert safe_name("cam/fight 1.mp4") == "cam_fight_1.mp4"
    assert safe_name("../x y") == "x_y"
    assert safe_name("_hidden.") == "hidden"  # no hidden file, nothing a data listing would skip
    assert safe_name("a//:b--", "-") == "a-b"
    assert safe_name("///") == "file"
    assert safe_name("", "-", "model") == "model"


def test_safe_names_are_unique_file_stems():
    assert safe_names(["a/b.mp4", "a_b.mp4", "../x y", "///"]) == ["a_b.mp4", "a_b.mp4_2", "x_y", "video"]
    assert safe_names(["a", "a", "a_2"]) == ["a", "a_2", "a_2_2"]
