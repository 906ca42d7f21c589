"""A hostile corpus through the CPU stages (issue 17, item 4): good videos mixed with truncated, zero-byte,
text, audio-only, one-frame and 7680 x 4320 files, and videos that are odd but good (variable frame rate,
a rotation flag, an mp4 named .avi). Ingest records each bad file once with its reason, decodes no frame of
the huge one (refused from its header: ``ingest.max_pixels``), and score, sample and build-benchmarks carry
on with the rest; malformed or duplicated annotation lines stop before any work with the file and the line.

The scorer is the shared ``scored_run``'s (same ingest settings): no training here.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from dualvad import paths
from dualvad import schema as S
from dualvad.config import load_config
from dualvad.corpus import read_corpus
from dualvad.corpus.layout import CorpusFormatError
from dualvad.pipeline.build_benchmarks import run_build_benchmarks
from dualvad.pipeline.ingest import run_ingest
from dualvad.pipeline.sample import run_sample
from dualvad.pipeline.score import run_score
from dualvad.rundir import open_run
from dualvad.video.decode import MAX_PIXELS

from faultlog import record_fault
from media import write_audio_only, write_broken_files, write_rotated, write_vfr_video, write_video

# Only copies the shared scored run's scorer (built once for both workers): a group of its own, so it runs
# on whichever worker is free, not on the scored run's, the suite's longest (docs/decisions.md, issue 26).
pytestmark = pytest.mark.xdist_group("hostile_corpus")

K = 8
# video id -> the words its failure reason must hold
BAD = {"Bad/empty.mp4": "0 bytes", "Bad/text.mp4": "not a decodable video",
       "Bad/truncated.mp4": "truncated, corrupt", "Bad/one_frame.mp4": "1 frames, fewer than the 8",
       "Bad/audio.mp4": "no video stream", "Bad/huge.mp4": "7680 x 4320 = 33,177,600 pixels exceed the cap"}
# odd but decodable: every one is ingested
ODD = ("Odd/vfr.mp4", "Odd/rotated.mp4", "Odd/named.avi")
GOOD = ("Normal/n1.mp4", "Explosion/f1.mp4")


def _hostile_corpus(root: Path) -> Path:
    videos = root / "videos"
    for video_id in GOOD:
        write_video(videos / video_id, 40)
    for kind, path in write_broken_files(root / "broken").items():
        (videos / "Bad").mkdir(parents=True, exist_ok=True)
        shutil.move(path, videos / "Bad" / f"{kind}.mp4")
    write_audio_only(videos / "Bad" / "audio.mp4")
    write_video(videos / "Bad" / "huge.mp4", 2, width=7680, height=4320)
    write_vfr_video(videos / "Odd" / "vfr.mp4", [1, 1, 4, 4, 2, 1, 1, 3] * 5)
    write_rotated(write_video(root / "upright.mp4", 40), videos / "Odd" / "rotated.mp4")
    write_video(root / "named.mp4", 40).rename(videos / "Odd" / "named.avi")  # mp4 bytes, .avi name
    annotations = root / "annotations"
    annotations.mkdir()
    (annotations / "train.txt").write_text("Normal/n1.mp4 Normal\n")
    test = [f"{v} Explosion" for v in ("Explosion/f1.mp4", *ODD)] + [f"{v} Normal" for v in BAD]
    (annotations / "test.txt").write_text("\n".join(test) + "\n")
    return root


@pytest.fixture(scope="module")
def hostile(scored_run, tmp_path_factory):
    """The hostile corpus ingested, scored with the shared scorer, sampled and built into benchmarks:
    (config, run path, ingest summary)."""
    scored_config, _ = scored_run
    root = tmp_path_factory.mktemp("hostile")
    corpus = _hostile_corpus(root / "corpus")
    run = root / "run"
    config = load_config(None, [f"corpus={corpus}", f"run={run}", f"ingest.segments={K}",
                                "ingest.workers=2", "ingest.cpus_per_worker=0.5", "sample.budget=8",
                                "benchmarks.clip_frames=4", "benchmarks.image_size=56",
                                "stages.max_failure_share=0.6"])
    summary = run_ingest(config)
    shutil.copytree(Path(scored_config.run) / paths.SCORER, run / paths.SCORER)
    run_score(config)
    run_sample(config)
    run_build_benchmarks(config)
    return config, run, summary


def test_each_bad_video_is_recorded_once_with_its_reason(hostile):
    _, run, summary = hostile
    failures = pq.read_table(run / paths.SEGMENTS / paths.FAILURES_FILE).to_pylist()
    reasons = {row[S.VIDEO_ID]: row[S.REASON] for row in failures}
    assert len(failures) == len(reasons) == len(BAD) == summary.failures
    for video_id, words in BAD.items():
        assert words in reasons[video_id], reasons[video_id]
        assert video_id.split("/")[1] in reasons[video_id]  # the reason names the file
    assert f"{MAX_PIXELS:,}" in reasons["Bad/huge.mp4"] and "ingest.max_pixels" in reasons["Bad/huge.mp4"]


def test_every_good_and_odd_video_goes_through_every_stage_once(hostile):
    _, run, _ = hostile
    segments = open_run(str(run)).read_table(paths.SEGMENTS)
    expected = sorted((*GOOD, *ODD))
    counts = pc.value_counts(segments[S.VIDEO_ID]).to_pylist()
    rows = list(zip(segments[S.VIDEO_ID].to_pylist(), segments[S.SEGMENT_INDEX].to_pylist(), strict=True))
    record_fault(f"ingest: hostile corpus ({len(BAD)} bad files, {len(expected)} good or odd)",
                 "every stage finished", rows_lost=K * len(expected) - len(set(rows)),
                 rows_duplicated=len(rows) - len(set(rows)))
    assert sorted((c["values"], c["counts"]) for c in counts) == [(v, K) for v in expected]
    for output in (paths.SCORES, paths.SAMPLES):
        ids = open_run(str(run)).read_table(output)[S.VIDEO_ID].to_pylist()
        assert sorted(set(ids)) == expected, output
    samples = open_run(str(run)).read_table(paths.SAMPLES)
    assert samples.num_rows == len(expected)  # one row per video
    image = pq.read_table(run / paths.BENCHMARKS / "image")
    assert sorted(set(image[S.VIDEO_ID].to_pylist())) == expected
    assert image.num_rows == 8 * len(expected)  # the budget of every video, none lost or doubled


def test_a_rotated_video_reaches_the_benchmark_upright(hostile):
    # The container's display matrix turns the 64 x 48 stream into a 48 x 64 picture; the decoder applies
    # it when it resizes, so the benchmark frames are portrait, as a player shows them.
    from io import BytesIO

    from PIL import Image

    _, run, _ = hostile
    image = pq.read_table(run / paths.BENCHMARKS / "image")
    rows = image.filter(pc.equal(image[S.VIDEO_ID], "Odd/rotated.mp4")).to_pylist()
    sizes = {Image.open(BytesIO(row["image"])).size for row in rows}
    assert sizes == {(42, 56)}  # (width, height): the longer side at benchmarks.image_size = 56


@pytest.mark.parametrize("lines,where,problem", [
    (["Normal/n1.mp4 Normal", "Normal/n1.mp4 Normal"], "train.txt:2", "already listed on line 1"),
    (["Normal/n1.mp4"], "train.txt:1", "1 field"),
    (["Normal/n1.mp4 Normal", "../outside.mp4 Normal"], "train.txt:2", "outside.mp4"),
])
def test_malformed_or_duplicated_annotation_lines_stop_with_the_file_and_line(tmp_path, lines, where,
                                                                              problem):
    write_video(tmp_path / "videos" / "Normal" / "n1.mp4", 20)
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "train.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "annotations" / "test.txt").write_text("")
    with pytest.raises(CorpusFormatError) as raised:
        read_corpus(tmp_path)
    assert where in str(raised.value) and problem in str(raised.value), str(raised.value)
