"""Worker loss in Ray Data (issue 17, item 1): a process of a running stage is SIGKILLed, as a lost node or an
OOM kill would end it; the stage finishes, and every video appears exactly once in its output, with the
values of an undisturbed run."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import psutil
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import torch

from dualvad import paths
from dualvad import schema as S
from dualvad.config import load_config
from dualvad.corpus import SynthSpec, generate_corpus
from dualvad.pipeline.ingest import run_ingest
from dualvad.pipeline.score import run_score
from dualvad.rundir import open_run
from dualvad.train.train_scorer import run_train_scorer

from faultlog import record_fault
from raykill import Killer, registered_metric


def _staged(run: Path, output: str) -> list[Path]:
    return sorted((run / paths.WORK_DIR).glob(f"{output}-*/part-*.parquet"))


def test_a_killed_decoding_worker_loses_and_duplicates_nothing(ray_session, tmp_path):
    """One video per ingest task (``stages.flush_videos=1``), one task at a time: the worker process running
    a task is SIGKILLed once two parts are staged; Ray runs the task again, and its part, named after its
    videos, replaces any copy the dead one left."""
    corpus = tmp_path / "corpus"
    records = generate_corpus(corpus, SynthSpec(videos=8, seconds=1.0, seed=4))
    run = tmp_path / "run"
    config = load_config(None, [f"corpus={corpus}", f"run={run}", "ingest.segments=4", "ingest.workers=1",
                                "ingest.cpus_per_worker=0.5", "stages.flush_videos=1"])
    with Killer("segment_videos_task", lambda: len(_staged(run, paths.SEGMENTS)) >= 2) as killer:
        summary = run_ingest(config)
    assert killer.pid is not None, "ingest finished before a decoding worker could be killed"
    table = open_run(str(run)).read_table(paths.SEGMENTS)
    keys = list(zip(table[S.VIDEO_ID].to_pylist(), table[S.SEGMENT_INDEX].to_pylist(), strict=True))
    expected = {(record.video_id, k) for record in records for k in range(4)}
    record_fault("ingest: decoding worker SIGKILLed mid-stage",
                 f"stage finished, {summary.failures} failures", rows_lost=len(expected - set(keys)),
                 rows_duplicated=len(keys) - len(set(keys)))
    assert summary.failures == 0
    assert len(keys) == len(set(keys)) and set(keys) == expected  # nothing lost, nothing twice


@pytest.fixture
def run_of_many_parts(scored_run, tmp_path):
    """A copy of the scored run whose segments are one part file per video (score's unit of work is a
    part), without its scores: (config, run folder, the original scores by (video, segment))."""
    config, _ = scored_run
    target = tmp_path / "run"
    shutil.copytree(config.run, target, ignore=shutil.ignore_patterns(
        paths.LOCK_FILE, paths.LOCK_OWNER_FILE, paths.WORK_DIR, paths.SCORES, paths.SAMPLES, paths.BENCHMARKS,
        paths.FINETUNE, paths.EVAL))
    segments = open_run(str(target)).read_table(paths.SEGMENTS)
    for part in (target / paths.SEGMENTS).glob("part-*.parquet"):
        part.unlink()
    for index, video_id in enumerate(sorted(set(segments[S.VIDEO_ID].to_pylist()))):
        rows = segments.filter(pc.equal(segments[S.VIDEO_ID], video_id))
        pq.write_table(rows, target / paths.SEGMENTS / f"part-video-{index:05d}.parquet")
    original = open_run(config.run).read_table(paths.SCORES).to_pylist()
    scores = {(row[S.VIDEO_ID], row[S.SEGMENT_INDEX]): row[S.SCORE] for row in original}
    config = dataclasses.replace(config, run=str(target),
                                 scorer=dataclasses.replace(config.scorer, score_workers=1))
    return config, target, scores


def test_a_killed_scoring_actor_loses_and_duplicates_nothing(run_of_many_parts):
    config, run, expected = run_of_many_parts
    videos = len({video for video, _ in expected})
    with Killer("ScoreWorker", lambda: len(_staged(run, paths.SCORES)) >= 3) as killer:
        summary = run_score(config)
    assert killer.pid is not None, "score finished before its actor could be killed"
    assert not psutil.pid_exists(killer.pid) or psutil.Process(killer.pid).status() == psutil.STATUS_ZOMBIE
    assert summary.videos == videos
    rows = open_run(str(run)).read_table(paths.SCORES).to_pylist()
    keys = [(row[S.VIDEO_ID], row[S.SEGMENT_INDEX]) for row in rows]
    record_fault("score: scoring actor SIGKILLed", "stage finished",
                 rows_lost=len(set(expected) - set(keys)), rows_duplicated=len(keys) - len(set(keys)))
    assert len(keys) == len(set(keys)) == len(expected)  # nothing lost, nothing twice
    scores = {key: row[S.SCORE] for key, row in zip(keys, rows, strict=True)}
    assert scores == pytest.approx(expected, abs=1e-6)  # the values of the undisturbed run


def test_a_killed_scorer_worker_resumes_from_its_checkpoint_to_the_weights_of_an_uninterrupted_run(
        scored_run, tmp_path):
    """Issue 17, item 2: the scorer's Ray Train worker is SIGKILLed once the epoch-10 checkpoint is registered
    (of 30; one every 10). Ray Train starts a new worker (FailureConfig), which loads that checkpoint and
    trains on; every epoch's randomness depends on (seed, rank, epoch) alone, so the exported scorer and the
    history equal the shared run's, trained with the same settings and never interrupted."""
    config, _ = scored_run
    target = tmp_path / "run"
    shutil.copytree(Path(config.run) / paths.SEGMENTS, target / paths.SEGMENTS)
    resumed = dataclasses.replace(config, run=str(target))
    with Killer("RayTrainWorker", lambda: registered_metric(target / paths.WORK_DIR, "epoch") >= 9) as killer:
        run_train_scorer(resumed)
    assert killer.pid is not None, "training finished before its worker could be killed"
    history = json.loads((target / paths.SCORER / paths.SCORER_HISTORY_FILE).read_text())
    uninterrupted = json.loads((Path(config.run) / paths.SCORER / paths.SCORER_HISTORY_FILE).read_text())
    record_fault("train-scorer: Ray Train worker SIGKILLed after the epoch-10 checkpoint",
                 f"resumed; {len(history)} reports as in an uninterrupted run", rows_lost=0)
    assert [h["epoch"] for h in history] == [h["epoch"] for h in uninterrupted] == [9, 19, 29]
    assert history == [pytest.approx(report, abs=1e-6, nan_ok=True) for report in uninterrupted]
    weights, reference = (torch.load(Path(run, paths.SCORER, paths.SCORER_MODEL_DIR, "model.pt"))
                          for run in (target, config.run))
    assert weights.keys() == reference.keys()
    for name, tensor in weights.items():
        torch.testing.assert_close(tensor, reference[name], rtol=0, atol=1e-6, msg=name)
