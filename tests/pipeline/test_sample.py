"""The sample stage over a scored run: one row per video, frames as the allocation defines them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from dualvad import schema as S
from dualvad.paths import FAILURES_FILE, WORK_DIR
from dualvad.pipeline.sample import run_sample
from dualvad.rundir import open_run
from dualvad.stages.runner import FailureShareError, Skipped
from dualvad.video.sampling import focused
from dualvad.video.segments import segment_bounds


def with_sample(config, **changes):
    return dataclasses.replace(config, sample=dataclasses.replace(config.sample, **changes))


def test_focused_samples_match_the_allocation_and_cover_every_segment(scored_run, tmp_path):
    config, _ = scored_run
    config = dataclasses.replace(with_sample(config, budget=12, tau=0.2), run=config.run)
    summary = run_sample(config)
    run = open_run(config.run)
    samples = run.read_table("samples")
    assert samples.schema.equals(S.SAMPLES_SCHEMA)
    assert summary.videos == samples.num_rows == 20 and summary.frames == 20 * 12
    scores = run.read_table("scores").sort_by([(S.VIDEO_ID, "ascending"), (S.SEGMENT_INDEX, "ascending")])
    by_video = dict(zip(scores[S.VIDEO_ID].to_pylist()[::8], scores[S.SCORE].to_numpy().reshape(-1, 8),
                        strict=True))
    for row in samples.to_pylist():
        bounds = segment_bounds(row[S.NUM_FRAMES], 8)
        expected = focused(by_video[row[S.VIDEO_ID]], bounds, 12, tau=0.2)
        assert row[S.FRAMES] == expected.frames.tolist()
        assert row[S.PER_SEGMENT] == expected.per_segment.tolist() and min(row[S.PER_SEGMENT]) >= 1
        np.testing.assert_allclose(row[S.SEGMENT_SCORES], by_video[row[S.VIDEO_ID]], rtol=1e-6)
    # frames stay where the strategy put them although sample.within_decode_window is on (the default) and
    # ingest recorded every video's keyframes: the generated videos have one every second (fps frames), so
    # no frame lies deeper than ingest.decode_window_s (1 s) into its GOP; build-benchmarks and evaluate
    # read these frames
    assert config.sample.within_decode_window and config.ingest.decode_window_s == 1.0
    segments = run.read_table("segments").to_pylist()
    assert all(np.diff([*row[S.KEYFRAMES], row[S.NUM_FRAMES]]).max() <= row[S.FPS] for row in segments)
    again = run_sample(config)
    assert isinstance(again, Skipped)


def test_other_strategy_replaces_samples_and_short_videos_are_failures(scored_run):
    config, _ = scored_run
    run = open_run(config.run)
    summary = run_sample(with_sample(config, strategy="uniform", budget=44))  # 3 s @ 15 fps = 45 frames
    assert summary.failures == 0 and set(run.read_table("samples")[S.STRATEGY].to_pylist()) == {"uniform"}
    with pytest.raises(FailureShareError, match="20 of 20 videos failed.*frame budget 46 is outside 1..45"):
        run_sample(with_sample(config, strategy="random", budget=46))
    # the rejected run deleted nothing: the uniform samples are still the published ones
    assert set(run.read_table("samples")[S.STRATEGY].to_pylist()) == {"uniform"}
    (staged,) = [p for p in Path(run.path(WORK_DIR)).iterdir() if p.name.startswith("samples-")]
    reasons = pq.read_table(staged / FAILURES_FILE)[S.REASON].to_pylist()
    assert len(reasons) == 20 and "frame budget 46 is outside 1..45" in reasons[0]


def test_a_run_ingested_with_a_window_but_without_keyframes_names_the_fix(scored_run, tmp_path):
    import shutil

    from dualvad import paths
    from dualvad.errors import MissingInputError

    config, _ = scored_run
    copy = tmp_path / "run"
    for part in (paths.SEGMENTS, paths.SCORES):  # with their stage records
        shutil.copytree(Path(config.run, part), copy / part)
    for file in (copy / paths.SEGMENTS).glob("part-*.parquet"):  # as ingested before the column existed
        pq.write_table(pq.read_table(file).drop_columns([S.KEYFRAMES]), file)
    config = dataclasses.replace(config, run=str(copy))
    fix = r"ingested before ingest recorded each video's keyframes.*`dualvad ingest --force`.*window=false"
    with pytest.raises(MissingInputError, match=fix):
        run_sample(config)
    assert run_sample(with_sample(config, within_decode_window=False)).videos == 20  # the strategy's frames


def test_a_sample_record_that_predates_a_key_reads_as_that_key_did_before(scored_run, tmp_path):
    import json
    import shutil

    from dualvad import paths
    from dualvad.stages.recorded import recorded_sample_settings

    config, _ = scored_run
    copy = tmp_path / "run"
    for part in (paths.SEGMENTS, paths.SCORES):
        shutil.copytree(Path(config.run, part), copy / part)
    run_sample(dataclasses.replace(config, run=str(copy)))
    run = open_run(str(copy))
    assert recorded_sample_settings(run).window_anchors  # today's default, recorded
    record_file = copy / paths.SAMPLES / paths.STAGE_FILE
    record = json.loads(record_file.read_text())
    for key in ("window_anchors", "within_decode_window"):  # sampled before window_anchors, then before both
        del record["settings"][key]
        record_file.write_text(json.dumps(record))
        recorded = recorded_sample_settings(run)
        assert not recorded.window_anchors and recorded.within_decode_window is (key == "window_anchors")
