"""Building both benchmarks on local Ray from a scored generated corpus, read back and checked."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from dualvad import schema as S
from dualvad.benchmarks.export import export_jsonl
from dualvad.corpus import read_corpus
from dualvad.pipeline.build_benchmarks import run_build_benchmarks
from dualvad.pipeline.sample import run_sample
from dualvad.rundir import open_run
from dualvad.video.decode import open_video, read_frames
from dualvad.video.gop import frame_size


@pytest.fixture(scope="module")
def built(scored_run, tmp_path_factory):
    config, _ = scored_run
    config = dataclasses.replace(
        config, sample=dataclasses.replace(config.sample, strategy="focused", budget=8, tau=0.2),
        benchmarks=dataclasses.replace(config.benchmarks, shards=2, image_size=96, clip_frames=4))
    run_sample(config)
    summary = run_build_benchmarks(config)
    return config, summary


def read(run_dir: str, kind: str):
    run = open_run(run_dir)
    return [row for path in run.parquet_files("benchmarks", kind)
            for row in pq.read_table(path).to_pylist()]


def test_shards_manifest_and_counts(built):
    config, summary = built
    root = Path(config.run) / "benchmarks"
    assert sorted(p.name for p in (root / "image").iterdir()) == [
        "shard-00000-of-00002.parquet", "shard-00001-of-00002.parquet"]
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["image"]["rows"] == summary.image_rows == 20 * 8
    assert manifest["video"]["rows"] == summary.video_rows == 20 * 2  # 8 frames -> two clips of 4
    assert sum(manifest["image"]["categories"].values()) == 160
    assert manifest["image"]["anomalous"] == sum(r["anomalous"] for r in read(config.run, "image"))
    assert pq.read_schema(root / "image" / "shard-00000-of-00002.parquet").equals(S.IMAGE_BENCH_SCHEMA)


def test_jpeg_is_the_selected_frame(built):
    config, _ = built
    rows = read(config.run, "image")
    for row in rows[::23]:
        path = next(r.path for r in read_corpus(config.corpus) if r.video_id == row[S.VIDEO_ID])
        probe = read_frames(open_video(path), np.array([0]), path)[0]
        width, height = frame_size(probe.shape[1], probe.shape[0], 96)
        reader = open_video(path, width=width, height=height)
        stored = np.asarray(Image.open(__import__("io").BytesIO(row["image"])).convert("RGB"), dtype=float)
        frame = row["frame_index"]
        direct = read_frames(reader, np.array([frame]), path)[0].astype(float)
        other = read_frames(reader, np.array([(frame + 8) % len(reader)]), path)[0].astype(float)
        assert stored.shape == direct.shape == (height, width, 3)
        assert np.abs(stored - direct).mean() < 4.0  # JPEG loss only
        assert np.abs(stored - direct).mean() < np.abs(stored - other).mean()


def test_labels_follow_the_temporal_annotations(built):
    config, _ = built
    records = {r.video_id: r for r in read_corpus(config.corpus)}
    rows = read(config.run, "image")
    for row in rows:
        record = records[row[S.VIDEO_ID]]
        if record.intervals is not None:
            inside = any(s <= row["frame_index"] < e for s, e in record.intervals)
            assert row["anomalous"] == inside and not row[S.PSEUDO]
            assert row[S.CONVERSATIONS][1]["value"] == ("Yes" if inside else "No")
        elif record.label == "Normal":
            assert not row["anomalous"] and not row[S.PSEUDO]
        else:
            assert row[S.PSEUDO] and row["anomalous"] == (row[S.SCORE] >= 0.5)
    for clip in read(config.run, "video"):
        record = records[clip[S.VIDEO_ID]]
        if record.intervals is not None:
            truth = [any(s <= f < e for s, e in record.intervals) for f in clip["frame_indices"]]
            assert clip["abnormal"] == truth
        assert clip["abnormality_score"] == int(np.floor(10 * sum(clip["abnormal"]) / 4 + 0.5))
        assert len(clip["images"]) == 4 and clip["frame_indices"] == sorted(clip["frame_indices"])


def test_same_inputs_give_byte_identical_shards(built, tmp_path):
    config, _ = built
    twin = tmp_path / "twin"
    shutil.copytree(Path(config.run) / "samples", twin / "samples")
    run_build_benchmarks(dataclasses.replace(config, run=str(twin)))
    for kind in ("image", "video"):
        for original in sorted((Path(config.run) / "benchmarks" / kind).iterdir()):
            assert original.read_bytes() == (twin / "benchmarks" / kind / original.name).read_bytes()


def test_export_jsonl_writes_internvl_records(built, tmp_path):
    config, summary = built
    export = export_jsonl(open_run(config.run), tmp_path / "jsonl")
    assert sum(v for k, v in export.files.items() if k.startswith("image")) == summary.image_rows
    line = json.loads((tmp_path / "jsonl" / "video_test.jsonl").read_text().splitlines()[0])
    assert len(line["image"]) == 4 and all((tmp_path / "jsonl" / p).is_file() for p in line["image"])
    assert line["conversations"][0]["value"].count("<image>") == 4


def test_export_describes_itself_to_llamafactory_internvl_and_the_hub(built, tmp_path):
    """Beside the JSONL files: LLaMA-Factory's dataset_info.json (sharegpt, InternVL's field names), one
    InternVL meta file per split (root, annotation, data_augment, repeat_time, length = the file's lines)
    and a dataset card whose counts are the manifest's."""
    from huggingface_hub import DatasetCard

    config, _ = built
    out = tmp_path / "jsonl"
    export = export_jsonl(open_run(config.run), out)
    names = ["image_test.jsonl", "image_train.jsonl", "video_test.jsonl", "video_train.jsonl"]
    assert sorted(export.files) == names
    tags = {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt"}
    assert json.loads((out / "dataset_info.json").read_text()) == {
        f"dualvad_{name[:-6]}": {"file_name": name, "formatting": "sharegpt",
                                 "columns": {"messages": "conversations", "images": "image"}, "tags": tags}
        for name in names}
    for split in ("train", "test"):
        meta = json.loads((out / f"internvl_meta_{split}.json").read_text())
        assert meta == {f"dualvad_{kind}_{split}": {
            "root": str(out), "annotation": str(out / f"{kind}_{split}.jsonl"), "data_augment": False,
            "repeat_time": 1, "length": len((out / f"{kind}_{split}.jsonl").read_text().splitlines())}
            for kind in ("image", "video")}
    manifest = json.loads((Path(config.run) / "benchmarks" / "manifest.json").read_text())
    card = DatasetCard.load(out / "README.md")
    assert card.data.configs == [
        {"config_name": kind, "data_files": [{"split": "test", "path": f"{kind}_test.jsonl"},
                                             {"split": "train", "path": f"{kind}_train.jsonl"}]}
        for kind in ("image", "video")]
    assert card.data.size_categories == ["n<1K"]  # 160 image + 40 video rows
    image = manifest["image"]
    assert (f"| image | {image['rows']} | test {image['splits']['test']}, train {image['splits']['train']} | "
            f"{image['anomalous_share']} | {image['pseudo_labelled']} |") in card.text
    for name, rows in export.files.items():
        assert f"| `{name}` | {rows} | `dualvad_{name[:-6]}` |" in card.text
    assert f"{export.images} frames under `images/`" in card.text
