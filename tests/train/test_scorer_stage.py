"""Scorer training (Ray Train) and corpus-wide scoring (Ray Data) on a generated corpus."""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import torch
from sklearn.metrics import roc_auc_score

from dualvad import schema as S
from dualvad.config import load_config
from dualvad.corpus import SynthSpec, generate_corpus, read_corpus
from dualvad.corpus.layout import NORMAL_LABEL
from dualvad.pipeline.ingest import run_ingest
from dualvad.pipeline.score import run_score
from dualvad.rundir import open_run
from dualvad.scorer.data import video_set_from_segments
from dualvad.scorer.trained import StaleScorerError, TrainedScorer
from dualvad.stages.runner import Skipped
from dualvad.train.train_scorer import ScorerTrainingError, ScorerTrainSummary, run_train_scorer


def test_trained_scorer_ranks_anomalous_test_videos_above_normal(scored_run):
    config, summary = scored_run
    run = open_run(config.run)
    train_split = [r for r in read_corpus(config.corpus) if r.split == "train"]
    assert summary.train_videos + summary.val_videos == len(train_split)
    assert (run.path("scorer", "model") == summary.output) and run.exists("scorer", "model", "model.pt")
    segments = run.read_table("segments")
    scores = run.read_table("scores")
    assert scores.schema.equals(S.SCORES_SCHEMA) and scores.num_rows == segments.num_rows
    lists = [S.FEATURE, S.GT_INTERVALS, S.CROP_FEATURES, S.KEYFRAMES]  # Arrow joins carry no list columns
    joined = segments.drop_columns(lists).join(scores, [S.VIDEO_ID, S.SEGMENT_INDEX])
    test = joined.filter(pc.equal(joined[S.SPLIT], "test")).group_by([S.VIDEO_ID, S.LABEL]).aggregate(
        [(S.SCORE, "max"), (S.SCORE, "min")])
    assert pc.min(test[f"{S.SCORE}_min"]).as_py() >= 0 and pc.max(test[f"{S.SCORE}_max"]).as_py() <= 1
    # Ranking, not a threshold: each held-out test video by its highest segment, anomalous above normal
    # (0.92-1.0 over 5 training seeds of this run; chance 0.5). Where in a video the anomaly is, 8
    # training videos do not teach (segment AUC 0.43-0.58 with the scene-relative cues): the frame AUCs
    # of bench/cues.py and bench/real_footage.py measure localisation (docs/decisions.md, 2026-12-07).
    anomalous = pc.not_equal(test[S.LABEL], NORMAL_LABEL).to_numpy(zero_copy_only=False)
    assert 0 < anomalous.sum() < len(anomalous)
    assert roc_auc_score(anomalous, test[f"{S.SCORE}_max"].to_numpy()) > 0.8


def test_checkpoint_round_trip_gives_identical_scores(scored_run, tmp_path):
    config, _ = scored_run
    run = open_run(config.run)
    loaded = TrainedScorer.load(run.path("scorer", "model"))
    written = run.read_table("scores")
    by_key = dict(zip(zip(written[S.VIDEO_ID].to_pylist(), written[S.SEGMENT_INDEX].to_pylist(), strict=True),
                      written[S.SCORE].to_pylist(), strict=True))
    # The score stage runs one forward pass per segments part file: score the same batches here (float32
    # results of a batched pass can differ in the last bit with the batch's composition), on one thread as
    # its 1-CPU actors do (Ray sets their OMP_NUM_THREADS to 1; more threads sum in another order).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _compare_with_the_written_scores(run, loaded, by_key, tmp_path)
    finally:
        torch.set_num_threads(threads)


def _compare_with_the_written_scores(run, loaded: TrainedScorer, by_key: dict, tmp_path) -> None:
    for path in run.parquet_files("segments"):
        videos = video_set_from_segments(pq.read_table(path), categories=loaded.categories)
        direct = loaded.score(videos.features)
        expected = [by_key[(video, k)] for video in videos.video_ids for k in range(direct.shape[1])]
        np.testing.assert_array_equal(direct.reshape(-1), np.asarray(expected, np.float32))
        loaded.save(tmp_path / "copy")
        np.testing.assert_array_equal(TrainedScorer.load(tmp_path / "copy").score(videos.features), direct)


def test_best_checkpoint_is_the_lowest_validation_loss(scored_run):
    config, summary = scored_run
    run = open_run(config.run)
    exported = TrainedScorer.load(run.path("scorer", "model")).metrics
    reported = json.loads(Path(run.path("scorer", "history.json")).read_text())
    assert [m["epoch"] for m in reported] == [9, 19, 29]  # report_every=10, epochs=30
    assert not Path(run.path("scorer", "ray")).exists()  # Ray Train's checkpoints went with the scratch
    assert exported["val_loss"] == min(m["val_loss"] for m in reported) == summary.kept_val_loss
    assert 0.0 <= exported["val_auc"] <= 1.0 and exported["val_auc"] == summary.kept_val_auc
    # what the AUC is over, for the evaluation report: the held-out videos, both classes among them
    assert exported["val_held_out"] is True and exported["val_videos"] == summary.val_videos
    assert 0 < exported["val_anomalous"] < exported["val_videos"]


def test_tensorboard_events_equal_the_reports(scored_run):
    """scorer.tracking=tensorboard (the shared fixture's): RUN/scorer/tensorboard holds every metric of every
    report (loss, val_loss, val_auc and what the validation is over) at its epoch, as history.json has them
    (float32, as TensorBoard stores them)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config, _ = scored_run
    run = open_run(config.run)
    history = json.loads(Path(run.path("scorer", "history.json")).read_text())
    events = EventAccumulator(run.path("scorer", "tensorboard"))
    events.Reload()
    reported = sorted(key for key in history[0] if key != "epoch")  # and what the validation is over
    assert {"loss", "val_auc", "val_loss"} <= set(reported)
    assert sorted(events.Tags()["scalars"]) == reported
    for key in reported:
        assert [(event.step, event.value) for event in events.Scalars(key)] == [
            (report["epoch"], float(np.float32(report[key]))) for report in history], key


def test_a_scorer_of_an_older_architecture_is_refused(scored_run, tmp_path):
    config, _ = scored_run
    stale = tmp_path / "stale"
    shutil.copytree(open_run(config.run).path("scorer", "model"), stale)
    meta = json.loads((stale / "scorer.json").read_text())
    del meta["architecture"]  # as written before the field existed
    (stale / "scorer.json").write_text(json.dumps(meta))
    with pytest.raises(StaleScorerError, match="architecture 1.*re-run `dualvad train-scorer`"):
        TrainedScorer.load(stale)


def test_finished_training_and_scoring_are_skipped(scored_run, capsys):
    config, summary = scored_run
    started = time.perf_counter()
    again = run_train_scorer(config)
    seconds = time.perf_counter() - started
    assert isinstance(again, Skipped) and again.output == str(Path(summary.output).parent)
    assert "train-scorer: already done" in str(again)
    # a fraction of the first run's time: no Ray Train at all (printed, not asserted: timing is no test)
    print(f"train-scorer: first run {summary.seconds:.1f} s, skipped re-run {seconds:.3f} s")
    assert isinstance(run_score(config), Skipped)


def test_training_needs_both_classes(ray_session, tmp_path):
    generate_corpus(tmp_path / "c", SynthSpec(videos=4, seconds=1.0, anomaly_share=0.0))
    config = load_config(None, [f"corpus={tmp_path / 'c'}", f"run={tmp_path / 'r'}", "ingest.segments=4",
                                "ingest.cpus_per_worker=0.5"])
    run_ingest(config)
    with pytest.raises(ScorerTrainingError, match="0 anomalous of 2 videos.*both normal and anomalous"):
        run_train_scorer(config)


def test_summary_states_a_one_class_validation_auc_as_undefined():
    # _validation_metrics gives val_auc None on one class (dualvad.eval.metrics.auc_or_none): never 0.0
    defined = ScorerTrainSummary(10, 4, 7, 0.25, 0.8125, 1.5, "/run/scorer/model", checkpoint="val_loss")
    undefined = dataclasses.replace(defined, kept_val_auc=None)
    assert str(defined) == ("train-scorer: 10 training / 4 validation videos, epoch 7 kept (lowest val loss; "
                            "val loss 0.2500, val AUC 0.8125), 1.5 s -> /run/scorer/model")
    assert "epoch 7 kept (last; val loss 0.2500" in str(dataclasses.replace(defined, checkpoint="last"))
    assert "; val loss 0.2500, val AUC undefined (one class))" in str(undefined)
