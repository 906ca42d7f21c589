"""The ingest stage on a local Ray (2 CPUs): real decoding, exact segment bounds, failures, re-runs."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from dualvad import schema as S
from dualvad.config import load_config
from dualvad.paths import FAILURES_FILE, WORK_DIR
from dualvad.pipeline.ingest import part_name, run_ingest
from dualvad.rundir import open_run
from dualvad.stages.runner import FailureShareError, Skipped
from dualvad.video.segments import segment_bounds

from media import bikes_path, write_broken_files, write_video

K = 8
GOOD = {"Normal/n1.mp4": 40, "Fight/f1.mp4": 50, "Normal/n2.mp4": 33}
BROKEN = {"Bad/empty.mp4": "0 bytes", "Bad/text.mp4": "not a decodable video",
          "Bad/truncated.mp4": "truncated, corrupt",
          "Bad/one_frame.mp4": "1 frames, fewer than the 8 segments requested; every segment needs at "
                               "least one frame: lower --segments"}


def make_corpus(root: Path, with_broken: bool = True) -> Path:
    """Three good generated videos, the real bikes.mp4 clip, and (optionally) four broken files."""
    videos = root / "videos"
    for video_id, frames in GOOD.items():
        write_video(videos / video_id, frames)
    (videos / "Real").mkdir(parents=True)
    shutil.copy(bikes_path(), videos / "Real" / "bikes.mp4")
    train = ["Normal/n1.mp4 Normal", "Real/bikes.mp4 Normal"]
    test = ["Fight/f1.mp4 Fight", "Normal/n2.mp4 Normal"]
    if with_broken:
        for kind, path in write_broken_files(root / "broken").items():
            shutil.move(path, videos / "Bad" / f"{kind}.mp4") if (videos / "Bad").exists() else (
                (videos / "Bad").mkdir(), shutil.move(path, videos / "Bad" / f"{kind}.mp4"))
        train += [f"{video_id} Normal" for video_id in BROKEN]
    annotations = root / "annotations"
    annotations.mkdir()
    (annotations / "train.txt").write_text("\n".join(train) + "\n")
    (annotations / "test.txt").write_text("\n".join(test) + "\n")
    (annotations / "test_temporal.txt").write_text(
        "Fight/f1.mp4  Fight  10  30  -1  -1\nNormal/n2.mp4  Normal  -1  -1  -1  -1\n"
    )
    return root


def rows_of(table, video_id: str):
    return table.filter(pc.equal(table[S.VIDEO_ID], video_id))


def ingest_config(corpus: Path, run: Path, *extra: str):
    # "Fight" is this corpus's own category (UCF-Crime and XD-Violence say "Fighting"), declared as a
    # user would
    return load_config(None, [f"corpus={corpus}", f"run={run}", f"ingest.segments={K}",
                              "ingest.categories=[Fight]", "ingest.workers=2", "ingest.cpus_per_worker=0.5",
                              *extra])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus"))


def test_ingest_writes_exact_segments_and_records_failures(ray_session, corpus, tmp_path):
    run = tmp_path / "run"
    summary = run_ingest(ingest_config(corpus, run, "stages.max_failure_share=0.6"))
    assert (summary.videos, summary.processed, summary.failures) == (8, 8, 4)
    assert summary.segments == 4 * K

    table = open_run(str(run)).read_table("segments")
    assert table.schema.equals(S.SEGMENTS_SCHEMA)
    frames = {**GOOD, "Real/bikes.mp4": 250}
    # 8 videos on 2 workers: groups of one (4 per worker), each written by its task under its video's name
    assert {p.name for p in (run / "segments").glob("part-*")} == {part_name([v]) for v in frames}
    assert set(table.column(S.VIDEO_ID).to_pylist()) == set(frames)
    for video_id, num_frames in frames.items():
        rows = rows_of(table, video_id).sort_by(S.SEGMENT_INDEX).to_pydict()
        bounds = np.stack([rows[S.START_FRAME], rows[S.END_FRAME]], axis=1)
        np.testing.assert_array_equal(bounds, segment_bounds(num_frames, K))
        assert rows[S.SEGMENT_INDEX] == list(range(K))
        assert set(rows[S.NUM_FRAMES]) == {num_frames}
        assert all(len(f) == len(rows[S.FEATURE][0]) > 0 for f in rows[S.FEATURE])
    fight = rows_of(table, "Fight/f1.mp4").sort_by(S.SEGMENT_INDEX)
    # 50 frames, K=8: bounds 0,6,12,18,25,31,37,43,50; anomaly [10, 30)
    expected = [0, 2 / 6, 1, 1, 5 / 6, 0, 0, 0]
    np.testing.assert_allclose(fight[S.GT_FRACTION].to_pylist(), expected, rtol=1e-6)
    assert set(fight[S.LABEL].to_pylist()) == {"Fight"} and set(fight[S.SPLIT].to_pylist()) == {"test"}
    normal_train = rows_of(table, "Normal/n1.mp4")
    assert normal_train[S.GT_FRACTION].null_count == K  # no temporal annotation -> null

    failures = pq.read_table(run / "segments" / FAILURES_FILE).to_pydict()
    reasons = dict(zip(failures[S.VIDEO_ID], failures[S.REASON], strict=True))
    assert set(reasons) == set(BROKEN)
    for video_id, expected_reason in BROKEN.items():
        assert expected_reason in reasons[video_id], reasons[video_id]
        assert video_id.split("/")[1] in reasons[video_id]  # the reason names the file

    # Re-running the finished stage skips it (the failure share is not a setting of the result).
    again = run_ingest(ingest_config(corpus, run, "stages.max_failure_share=0.7"))
    assert isinstance(again, Skipped) and "already done" in str(again)
    assert open_run(str(run)).read_table("segments").num_rows == 4 * K
    assert not [p for p in (run / "segments").iterdir() if p.name.startswith(".tmp-")]
    assert not list((run / WORK_DIR).iterdir())  # the staging folder became RUN/segments


def test_too_many_failures_fail_the_stage_publish_nothing_and_resume(ray_session, corpus, tmp_path):
    run = tmp_path / "run"
    with pytest.raises(FailureShareError, match=r"4 of 8 videos failed.*max_failure_share=0.25"):
        run_ingest(ingest_config(corpus, run))
    assert not (run / "segments").exists()  # nothing half-validated is published
    (staged,) = (run / WORK_DIR).iterdir()
    assert pq.read_table(staged / FAILURES_FILE).num_rows == 4
    assert open_run(str(staged)).read_table().num_rows == 4 * K  # good videos kept for the re-run
    # A higher limit: the decoded videos are kept, only the failed ones are tried again.
    summary = run_ingest(ingest_config(corpus, run, "stages.max_failure_share=0.6"))
    assert (summary.resumed, summary.processed, summary.segments, summary.failures) == (4, 4, 0, 4)
    assert open_run(str(run)).read_table("segments").num_rows == 4 * K


def test_annotated_frame_counts_reach_the_segments_table():
    # VERA's UCF_Eval.json states each video's length: ingest carries it beside the decoded count, and a
    # corpus without one keeps the identity (and so the fingerprint) it had before the column existed
    from dualvad.corpus import VideoRecord
    from dualvad.pipeline.ingest import _record_from_row, corpus_identity, segment_table, video_rows
    from dualvad.scorer.features import VideoFeatures

    records = [VideoRecord("Abuse/a.mp4", "/x/a.mp4", "Abuse", "test", ((5, 9),), 1412),
               VideoRecord("Normal/n.mp4", "/x/n.mp4", "Normal", "test", ())]
    assert [_record_from_row(row) for row in video_rows(records).to_pylist()] == records
    video = VideoFeatures(1410, 30.0, np.array([[0, 705], [705, 1410]]), np.zeros((2, 3), np.float32))
    table = segment_table(records[0], video)
    assert table.schema.equals(S.SEGMENTS_SCHEMA)
    assert table[S.ANNOTATED_FRAMES].to_pylist() == [1412, 1412]
    assert table[S.NUM_FRAMES].to_pylist() == [1410, 1410]
    assert segment_table(records[1], video)[S.ANNOTATED_FRAMES].null_count == 2
    # the identity of a corpus without frame counts is the one computed before the field existed
    before = hashlib.sha256(json.dumps(["Normal/n.mp4", "Normal", "test", [], -1]).encode()).hexdigest()[:16]
    assert corpus_identity([records[1]]) == before
    longer = dataclasses.replace(records[0], annotated_frames=1413)
    assert corpus_identity([records[0]]) != corpus_identity([longer])


def test_a_worker_writes_its_group_as_one_part_and_a_retry_replaces_it(corpus, tmp_path):
    # The worker writes the rows, the driver gets a summary without features; Ray running the same task
    # again (its worker died after writing) replaces the part instead of adding a second copy.
    from dualvad.corpus import read_corpus
    from dualvad.pipeline.ingest import SUMMARY_SCHEMA, _extractor, segment_videos, video_rows, write_videos

    group = ["Normal/n1.mp4", "Bad/text.mp4", "Fight/f1.mp4"]
    config = ingest_config(corpus, tmp_path / "run").ingest
    batch = video_rows([r for r in read_corpus(corpus, config.categories) if r.video_id in group])
    extractor, out = _extractor(config), open_run(str(tmp_path / "staging"))
    summaries = [write_videos(batch, extractor, config, out.uri) for _ in range(2)]  # a task, its retry

    part = part_name(group)
    assert summaries[0].equals(summaries[1]) and summaries[0].schema.equals(SUMMARY_SCHEMA)  # no features
    summary = {row[S.VIDEO_ID]: row for row in summaries[0].to_pylist()}
    assert [(summary[v]["rows"], summary[v]["part"]) for v in group] == [(K, part), (0, None), (K, part)]
    assert "not a decodable video" in summary["Bad/text.mp4"][S.REASON]
    assert summary["Fight/f1.mp4"][S.REASON] is None
    assert [Path(p).name for p in out.parquet_files()] == [part]  # one copy, no temporary file left
    assert sorted(p.name for p in (tmp_path / "staging").iterdir()) == [part]
    written = out.read_table()
    expected = segment_videos(batch, extractor, config)
    expected = expected.filter(pc.is_null(expected[S.REASON])).drop_columns([S.REASON])
    assert written.equals(expected.cast(S.SEGMENTS_SCHEMA))  # exactly the group's rows, in order


def test_parts_nobody_reported_are_dropped(tmp_path):
    # A part that a worker of an interrupted run finished after its driver was gone: not listed at the
    # start and not reported, its videos were decoded again, so it goes (a copy of each video stays).
    import pyarrow as pa

    from dualvad.pipeline.ingest import drop_strays

    out = open_run(str(tmp_path))
    for name in ("part-a.parquet", "part-b.parquet", "part-stray.parquet"):
        out.write_table(pa.table({S.VIDEO_ID: [name]}), name)
    out.write_table(pa.table({S.VIDEO_ID: ["f"]}), FAILURES_FILE)
    drop_strays(out, {out.path("part-a.parquet"), out.path("part-b.parquet")})
    assert sorted(p.name for p in tmp_path.iterdir()) == [FAILURES_FILE, "part-a.parquet", "part-b.parquet"]


def test_videos_per_part_keeps_every_worker_busy():
    from dualvad.pipeline.ingest import videos_per_part

    assert videos_per_part(1900, 16, 128) == 4  # 1,900 videos, 128 workers: 4 groups each at least
    assert videos_per_part(100_000, 16, 128) == 16  # a big corpus: stages.flush_videos per part
    assert videos_per_part(8, 16, 2) == 1 and videos_per_part(1, 16, 4) == 1
