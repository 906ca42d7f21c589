"""The run directory and the stage runner on a real S3 API (moto's server on loopback, no Ray): pyarrow's
S3 filesystem cannot rename a folder, so publishing copies it with its ``_stage.json`` last; a publish
killed half-way is put right by the next stage run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from dualvad import paths
from dualvad.corpus.layout import CorpusFormatError
from dualvad.files import write_atomic
from dualvad.rundir import RunDir, fetched_folder, open_run
from dualvad.stages.config import StagesConfig
from dualvad.stages.records import read_record
from dualvad.stages.registry import Stage
from dualvad.stages.runner import Skipped, StageContext, run_stage
from dualvad.storage import resolve

from objectstore import GatedS3, moto_s3, s3_client, s3_env, s3_environment

SEGMENTS = Stage("ingest", paths.SEGMENTS)


@pytest.fixture(scope="module")
def s3_bucket():
    """A moto S3 server with bucket ``runs``, its settings in this process's environment meanwhile."""
    with moto_s3("runs") as endpoint, s3_environment(s3_env(endpoint)):
        yield "s3://runs"


def _work(rows: int):
    def work(context: StageContext) -> str:
        context.out.write_table(pa.table({"x": list(range(rows))}), "part-0.parquet")
        context.out.write_text("nested", "sub", "note.txt")
        return f"wrote {rows}"

    return work


def _files(run, *parts: str) -> list[str]:
    selector = pafs.FileSelector(run.path(*parts), recursive=True, allow_not_found=True)
    return sorted(i.path[len(run.path(*parts)) + 1:] for i in run.fs.get_file_info(selector)
                  if i.type == pafs.FileType.File)


def test_pyarrow_s3_cannot_rename_a_folder(s3_bucket):
    """Why the runner copies: the premise of RunDir.move_dir, checked against the S3 API itself."""
    run = open_run(f"{s3_bucket}/premise")
    assert isinstance(run.fs, pafs.S3FileSystem)
    run.write_text("a", "folder", "file.txt")
    with pytest.raises(OSError):
        run.fs.move(run.path("folder"), run.path("moved"))


def test_read_text_reads_back_write_text_on_s3_and_names_a_missing_file(s3_bucket):
    """What the finetune card reads RUN/benchmarks/manifest.json with, on a run on S3."""
    run = open_run(f"{s3_bucket}/text")
    run.write_text('{"rows": 3, "name": "café"}', "benchmarks", "manifest.json")
    assert run.read_text("benchmarks", "manifest.json") == '{"rows": 3, "name": "café"}'
    with pytest.raises(FileNotFoundError, match="runs/text/benchmarks/missing.json"):
        run.read_text("benchmarks", "missing.json")


def test_write_atomic_puts_an_object_in_place_on_s3(s3_bucket):
    """No temporary object on S3 (a rename there is a copy): the one PUT is atomic."""
    fs, root = resolve(f"{s3_bucket}/atomic")
    seen: list[str] = []

    def writer(path: str) -> None:
        seen.append(path)
        pq.write_table(pa.table({"x": [4]}), path, filesystem=fs)

    write_atomic(f"{root}/deep/t.parquet", writer, fs)
    write_atomic(f"{root}/deep/page.html", b"<p>", fs)
    assert seen == [f"{root}/deep/t.parquet"]
    selector = pafs.FileSelector(f"{root}/deep", recursive=True)
    assert sorted(i.base_name for i in fs.get_file_info(selector)) == ["page.html", "t.parquet"]
    with fs.open_input_stream(f"{root}/deep/page.html") as stream:
        assert stream.read() == b"<p>"


def test_a_stage_publishes_skips_and_republishes_on_s3(s3_bucket):
    run = open_run(f"{s3_bucket}/publish")
    first = run_stage(SEGMENTS, run, {"k": 8}, _work(3), StagesConfig())
    assert first == "wrote 3"
    assert _files(run, paths.SEGMENTS) == [paths.STAGE_FILE, paths.CONFIG_FILE, "part-0.parquet",
                                           "sub/note.txt"]
    assert run.read_table(paths.SEGMENTS).column("x").to_pylist() == [0, 1, 2]
    assert isinstance(run_stage(SEGMENTS, run, {"k": 8}, _work(3), StagesConfig()), Skipped)
    assert run_stage(SEGMENTS, run, {"k": 9}, _work(5), StagesConfig()) == "wrote 5"
    assert run.read_table(paths.SEGMENTS).column("x").to_pylist() == [0, 1, 2, 3, 4]
    assert read_record(run, paths.SEGMENTS)["settings"] == {"k": 9}
    assert _files(run, paths.WORK_DIR) == []  # staging and the replaced output are gone


def test_a_publish_killed_mid_copy_on_s3_is_put_back_by_the_next_run(s3_bucket):
    """Killed while copying the new output into place: RUN/segments is half there (no _stage.json) and the
    earlier output waits aside; the next stage run deletes the half copy and puts the earlier one back."""
    run = open_run(f"{s3_bucket}/killed")
    run_stage(SEGMENTS, run, {"k": 8}, _work(3), StagesConfig())
    aside = run.path(paths.WORK_DIR, f"{paths.SEGMENTS}.replaced-0000dead")
    run.move_dir(run.path(paths.SEGMENTS), aside, marker=paths.STAGE_FILE)
    run.write_table(pa.table({"x": [7]}), paths.SEGMENTS, "part-0.parquet")  # the half-copied successor
    assert read_record(run, paths.SEGMENTS) is None  # a reader sees no output, never a half one
    assert isinstance(run_stage(SEGMENTS, run, {"k": 8}, _work(3), StagesConfig()), Skipped)
    assert run.read_table(paths.SEGMENTS).column("x").to_pylist() == [0, 1, 2]
    assert _files(run, paths.WORK_DIR) == []


class _CopyLog(pafs.FileSystemHandler):
    """Delegates to a filesystem, logging every copy and failing the one numbered ``fail_at`` (0-based)."""

    def __init__(self, fs: pafs.FileSystem, fail_at: int | None = None) -> None:
        self.fs, self.fail_at, self.copies = fs, fail_at, []

    def copy_file(self, src, dest):
        if len(self.copies) == self.fail_at:
            raise OSError("connection lost")
        self.copies.append(dest.rsplit("/", 1)[-1])
        self.fs.copy_file(src, dest)

    def __getattr__(self, name):  # the other FileSystemHandler methods, unchanged
        return getattr(self.fs, name)

    def get_type_name(self):
        return "copy-log"

    def normalize_path(self, path):
        return self.fs.normalize_path(path)

    def get_file_info(self, paths_):
        return self.fs.get_file_info(paths_)

    def get_file_info_selector(self, selector):
        return self.fs.get_file_info(selector)

    def create_dir(self, path, recursive):
        self.fs.create_dir(path, recursive=recursive)

    def delete_dir(self, path):
        self.fs.delete_dir(path)

    def delete_dir_contents(self, path, missing_dir_ok=False):
        self.fs.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self):
        raise NotImplementedError

    def delete_file(self, path):
        self.fs.delete_file(path)

    def move(self, src, dest):
        self.fs.move(src, dest)

    def open_input_stream(self, path):
        return self.fs.open_input_stream(path)

    def open_input_file(self, path):
        return self.fs.open_input_file(path)

    def open_output_stream(self, path, metadata):
        return self.fs.open_output_stream(path, metadata=metadata)

    def open_append_stream(self, path, metadata):
        return self.fs.open_append_stream(path, metadata=metadata)


def test_move_dir_on_s3_copies_the_marker_last_and_an_interrupted_copy_leaves_no_marker(s3_bucket):
    s3 = open_run(f"{s3_bucket}/move")
    for name in ("b.txt", paths.STAGE_FILE, "a/c.txt"):
        s3.write_text(name, "src", name)
    broken = RunDir(pafs.PyFileSystem(_CopyLog(s3.fs, fail_at=2)), s3.root, s3.uri)
    with pytest.raises(OSError, match="connection lost"):
        broken.move_dir(s3.path("src"), s3.path("dst"), marker=paths.STAGE_FILE)
    assert not s3.exists("dst", paths.STAGE_FILE) and _files(s3, "src") == [paths.STAGE_FILE, "a/c.txt",
                                                                              "b.txt"]
    log = _CopyLog(s3.fs)
    RunDir(pafs.PyFileSystem(log), s3.root, s3.uri).move_dir(s3.path("src"), s3.path("dst2"),
                                                             marker=paths.STAGE_FILE)
    assert log.copies == ["c.txt", "b.txt", paths.STAGE_FILE]
    assert _files(s3, "dst2") == [paths.STAGE_FILE, "a/c.txt", "b.txt"] and not s3.exists("src")


def test_a_corpus_on_s3_reads_as_the_local_one_and_its_videos_decode(s3_bucket, tmp_path):
    from dualvad.corpus import SynthSpec, generate_corpus, read_corpus
    from dualvad.video.decode import VideoDecodeError, open_video, read_frames

    generate_corpus(tmp_path / "corpus", SynthSpec(videos=4, seconds=1.0, seed=2))
    remote = open_run(f"{s3_bucket}/corpus")
    pafs.copy_files(str(tmp_path / "corpus"), remote.root, destination_filesystem=remote.fs)
    local_records, s3_records = read_corpus(tmp_path / "corpus"), read_corpus(f"{s3_bucket}/corpus")
    assert [r.path for r in s3_records] == [f"{s3_bucket}/corpus/videos/{r.video_id}" for r in local_records]
    strip = [(r.video_id, r.label, r.split, r.intervals) for r in local_records]
    assert [(r.video_id, r.label, r.split, r.intervals) for r in s3_records] == strip
    first = s3_records[0]
    frames = read_frames(open_video(first.path), np.array([0, 5]), first.path)
    assert np.array_equal(frames, read_frames(open_video(local_records[0].path), np.array([0, 5]), "local"))
    with pytest.raises(VideoDecodeError, match=f"{s3_bucket}/corpus/videos/missing.mp4: file does not exist"):
        open_video(f"{s3_bucket}/corpus/videos/missing.mp4")
    remote.fs.delete_file(remote.path("videos", first.video_id))
    with pytest.raises(CorpusFormatError, match=f"missing under {s3_bucket}/corpus/videos"):
        read_corpus(f"{s3_bucket}/corpus")
    # without annotations/, as on a local disk: every video unlabelled, under videos/ or the folder itself
    remote.fs.delete_dir(remote.path("annotations"))
    unlabelled = read_corpus(f"{s3_bucket}/corpus")
    ids = sorted(r.video_id for r in local_records)
    assert [(r.path, r.label, r.split) for r in unlabelled] == [
        (f"{s3_bucket}/corpus/videos/{video_id}", "unlabelled", "test")
        for video_id in ids if video_id != first.video_id]
    pafs.copy_files(str(tmp_path / "corpus" / "videos"), remote.path("plain"),
                    destination_filesystem=remote.fs)
    assert [r.path for r in read_corpus(f"{s3_bucket}/corpus/plain")] == [
        f"{s3_bucket}/corpus/plain/{video_id}" for video_id in ids]


def test_an_ingest_worker_writes_its_part_on_s3_and_a_retry_replaces_it(s3_bucket, tmp_path):
    """The ingest task's own write (no Ray needed to check it): one PUT per group, named after its
    videos, so running the task again leaves one copy."""
    from dualvad.config import IngestConfig
    from dualvad.corpus.layout import VideoRecord
    from dualvad.pipeline.ingest import _extractor, drop_strays, part_name, video_rows, write_videos

    from media import write_video

    records = [VideoRecord(f"Normal/{name}.mp4", str(write_video(tmp_path / f"{name}.mp4", frames)), "Normal",
                           "train", None) for name, frames in (("a", 30), ("b", 24))]
    config = IngestConfig(segments=4)
    out = open_run(f"{s3_bucket}/ingest/.work/segments-0123")
    summaries = [write_videos(video_rows(records), _extractor(config), config, out.uri) for _ in range(2)]
    assert summaries[0].equals(summaries[1])
    assert summaries[0].column("rows").to_pylist() == [4, 4]
    part = part_name(["Normal/a.mp4", "Normal/b.mp4"])
    assert _files(out) == [part]
    drop_strays(out, {out.path(part)})  # the driver names the part as S3's listing does: it stays
    assert _files(out) == [part]
    table = out.read_table()
    assert list(zip(table["video_id"].to_pylist(), table["segment_index"].to_pylist(), strict=True)) == [
        (f"Normal/{name}.mp4", i) for name in "ab" for i in range(4)]


def test_the_gate_holds_a_read_until_released_and_counts_its_retries_once():
    """The SDK gives up on a GET that stays silent and sends it again: the gate holds both attempts, counts
    one read, and once released the read gets the object whole."""
    from concurrent.futures import ThreadPoolExecutor

    body = bytes(range(256)) * 40
    with moto_s3("gate") as endpoint, GatedS3(endpoint) as gate:
        s3_client(endpoint).put_object(Bucket="gate", Key="held", Body=body)
        filesystem, path = pafs.FileSystem.from_uri(gate.uri("gate", "held"))
        gate.close()
        with ThreadPoolExecutor(1) as pool:
            try:
                read = pool.submit(lambda: filesystem.open_input_stream(path).read())
                gate.wait_for(1, attempts=2)  # the SDK has retried the held GET at least once
                assert gate.waiting == 1 and not read.done()
            finally:
                gate.release()
            assert read.result(timeout=60) == body
        gate.wait_for(0)


def test_resolve_gives_from_uris_path_and_one_filesystem_per_store(s3_bucket, monkeypatch):
    """The path inside equals pyarrow's own; one store is one filesystem, whatever the key; another
    endpoint in the environment is another store; a local path is refused by name."""
    uris = ["s3://runs/a/b.mp4", "s3://runs", "s3://runs/dir/", "s3://runs/a%20b/c.mp4?region=us-east-1",
            "file:///tmp/x%20y/z.mp4", "file:///tmp/dir/", "file:///"]
    for uri in uris:
        assert resolve(uri)[1] == pafs.FileSystem.from_uri(uri)[1], uri
    assert resolve("s3://runs/a")[0] is resolve("s3://runs/b/c")[0]
    assert resolve("s3://runs/a")[0] is not resolve("s3://runs/a?region=us-east-1")[0]
    shared = resolve("s3://runs/a")[0]
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    assert resolve("s3://runs/a")[0] is not shared
    with pytest.raises(ValueError, match="relative/video.mp4: not a filesystem URI"):
        resolve("relative/video.mp4")


def test_reads_of_one_store_run_concurrently():
    """Eight reads of one store at once all reach the store together: opening a URI never waits for
    another read in flight (pyarrow's ``from_uri`` per read did, so a Serve replica served one S3 read at a
    time while the others waited to open theirs)."""
    from concurrent.futures import ThreadPoolExecutor

    with moto_s3("gate") as endpoint, GatedS3(endpoint) as gate:
        s3_client(endpoint).put_object(Bucket="gate", Key="held", Body=b"video")

        def read() -> bytes:
            filesystem, path = resolve(gate.uri("gate", "held"))
            with filesystem.open_input_stream(path) as stream:
                return stream.read()

        gate.close()
        with ThreadPoolExecutor(8) as pool:
            try:
                reads = [pool.submit(read) for _ in range(8)]
                gate.wait_for(8)
            finally:
                gate.release()
            assert [future.result(timeout=60) for future in reads] == [b"video"] * 8


def test_fetched_folder_copies_a_store_folder_once_and_takes_a_local_one_as_it_is(s3_bucket, tmp_path):
    """What a Ray worker loads a model from: an S3 folder is copied to local disk once per process; a
    ``file://`` URI or a plain path is the local folder itself (no copy, no temporary folder)."""
    import tempfile

    run = open_run(f"{s3_bucket}/fetch")
    run.write_text("{}", "model", "config.json")
    copy = fetched_folder(f"{s3_bucket}/fetch/model")
    assert (tmp := Path(copy)).is_dir() and tmp.name.startswith("dualvad-fetched-")
    assert (tmp / "config.json").read_text() == "{}"
    assert fetched_folder(f"{s3_bucket}/fetch/model") == copy  # once per process
    local = tmp_path / "model"
    local.mkdir()
    temporary_before = set(Path(tempfile.gettempdir()).glob("dualvad-fetched-*"))
    assert fetched_folder(f"file://{local}") == str(local)
    assert fetched_folder(str(local)) == str(local)
    assert set(Path(tempfile.gettempdir()).glob("dualvad-fetched-*")) == temporary_before
