"""Your own videos: a folder without annotations ingests as unlabelled test videos, is scored with another
run's scorer (``score.scorer_run``), and the stages that need labels say so in one line."""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile

import numpy as np
import pyarrow.compute as pc
import pytest

from dualvad import paths
from dualvad import schema as S
from dualvad.cli import main
from dualvad.config import ScoreConfig, load_config
from dualvad.corpus import SynthSpec, generate_corpus
from dualvad.detector import scored_with
from dualvad.errors import MissingInputError, StageError
from dualvad.pipeline.build_benchmarks import BenchmarkError, run_build_benchmarks
from dualvad.pipeline.evaluate import run_evaluate
from dualvad.pipeline.evaluate_models import EvaluationError
from dualvad.pipeline.ingest import run_ingest
from dualvad.pipeline.sample import run_sample
from dualvad.pipeline.score import run_score
from dualvad.rundir import open_run
from dualvad.scorer.config import ScorerConfig
from dualvad.scorer.data import FeatureNormalizer, video_set_from_segments
from dualvad.scorer.trained import TrainedScorer, build_model, load_from_run
from dualvad.stages.plan import dry_run
from dualvad.stages.records import input_fingerprint, read_input, read_record
from dualvad.stages.runner import Skipped
from dualvad.train.train_scorer import ScorerTrainingError, run_train_scorer

VIDEOS = 4


@pytest.fixture(scope="module")
def own_run(scored_run, tmp_path_factory):
    """Generated videos with their annotations/ removed, ingested like the scored run (K=8): (config, the
    scored run's config, ingest summary)."""
    labelled, _ = scored_run
    root = tmp_path_factory.mktemp("own")
    generate_corpus(root / "corpus", SynthSpec(videos=VIDEOS, seconds=2.0, seed=11))
    shutil.rmtree(root / "corpus" / "annotations")
    config = load_config(None, [f"corpus={root / 'corpus'}", f"run={root / 'run'}", "ingest.segments=8",
                                "ingest.cpus_per_worker=0.5", "scorer.workers=1",
                                "scorer.cpus_per_worker=0.5", "sample.budget=8"])
    return config, labelled, run_ingest(config)


@pytest.fixture(scope="module")
def own_scored(own_run):
    """The own run scored with the labelled run's scorer: (config with score.scorer_run, labelled config,
    score summary)."""
    config, labelled, _ = own_run
    config = dataclasses.replace(config, score=ScoreConfig(scorer_run=labelled.run))
    return config, labelled, run_score(config)


def test_a_folder_without_annotations_ingests_as_unlabelled_test_videos(own_run):
    config, _, summary = own_run
    assert (summary.videos, summary.unlabelled, summary.failures) == (VIDEOS, VIDEOS, 0)
    assert f"ingest: {VIDEOS} videos, {VIDEOS} of them unlabelled (" in str(summary)
    table = read_input(open_run(config.run), paths.SEGMENTS, columns=[S.VIDEO_ID, S.LABEL, S.SPLIT])
    assert table.num_rows == VIDEOS * 8
    assert (set(table[S.LABEL].to_pylist()), set(table[S.SPLIT].to_pylist())) == ({"unlabelled"}, {"test"})


def test_train_scorer_on_unlabelled_videos_says_to_label_them_or_use_another_scorer(own_run):
    config, _, _ = own_run
    with pytest.raises(ScorerTrainingError, match=rf"the corpus's {VIDEOS} videos are all unlabelled .* "
                       r"`dualvad score score.scorer_run=OTHER_RUN`$"):
        run_train_scorer(config)
    assert not open_run(config.run).exists(paths.SCORER)


def test_score_without_a_scorer_is_one_line_naming_the_stage_to_run(own_run, capsys):
    config, _, _ = own_run
    assert main(["score", "--run", config.run]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("log: "), lines  # where the log is, then the one line
    assert lines[1].endswith(f"{config.run}/scorer does not exist: run `dualvad train-scorer` first, or "
                                  "score with another run's scorer: score.scorer_run=OTHER_RUN")
    other = dataclasses.replace(config, score=ScoreConfig(scorer_run=config.corpus))  # a run without one
    with pytest.raises(MissingInputError, match=rf"^score.scorer_run={config.corpus}: {config.corpus}/scorer "
                       "does not exist: run `dualvad train-scorer` first$"):
        run_score(other)


def test_a_scorer_trained_on_other_features_is_refused_before_any_ray_work(own_run, tmp_path):
    config, _, _ = own_run
    other = tmp_path / "other-run"  # a run whose scorer saw 5-dim features (the motion feature has 34)
    settings = ScorerConfig()
    TrainedScorer(settings, 5, ("Normal", "Explosion"), FeatureNormalizer(np.zeros(5, np.float32),
                  np.ones(5, np.float32)), build_model(settings, 5, 2)).save(other / paths.SCORER / "model")
    (other / paths.SCORER / paths.STAGE_FILE).write_text(json.dumps({"fingerprint": "0123456789abcdef"}))
    with pytest.raises(StageError, match=rf"^the scorer in {other}/scorer was trained on 5-dim features, the "
                       "segments hold 34-dim ones: ingest with that run's ingest settings"):
        run_score(dataclasses.replace(config, score=ScoreConfig(scorer_run=str(other))))
    assert not open_run(config.run).exists(paths.SCORES)


def test_score_with_another_runs_scorer_records_where_it_came_from(own_scored):
    config, labelled, summary = own_scored
    run, source = open_run(config.run), open_run(labelled.run)
    assert (summary.videos, summary.scored) == (VIDEOS, VIDEOS)
    record = read_record(run, paths.SCORES)
    assert record["settings"] == {"scorer_run": source.uri}
    assert record["inputs"] == {"segments": input_fingerprint(run, paths.SEGMENTS),
                                "scorer": input_fingerprint(source, paths.SCORER)}
    # the scores are the other run's scorer on these videos' features
    with tempfile.TemporaryDirectory() as local:
        scorer = load_from_run(source, local)
    videos = video_set_from_segments(read_input(run, paths.SEGMENTS), categories=scorer.categories)
    scores = read_input(run, paths.SCORES).sort_by([(S.VIDEO_ID, "ascending"),
                                                    (S.SEGMENT_INDEX, "ascending")])
    np.testing.assert_allclose(scores[S.SCORE].to_numpy().reshape(VIDEOS, 8), scorer.score(videos.features),
                               rtol=1e-6)
    assert isinstance(run_score(config), Skipped)
    with dry_run():
        plan = run_score(config)
    assert plan.skip and plan.settings == {"score.scorer_run": source.uri}
    # the detector and the server follow the record to the scorer that made the scores
    assert scored_with(run).uri == source.uri and scored_with(source).uri == source.uri


def test_benchmarks_and_evaluate_need_labels_and_say_so(own_scored):
    config, _, _ = own_scored
    run_sample(config)
    samples = read_input(open_run(config.run), paths.SAMPLES, columns=[S.LABEL])
    assert pc.unique(samples[S.LABEL]).to_pylist() == ["unlabelled"]
    with pytest.raises(BenchmarkError, match=rf"the {VIDEOS} videos of .*/samples are all unlabelled .* the "
                       "benchmarks' questions need labelled videos"):
        run_build_benchmarks(config)
    # the model is never loaded: the labels are checked first
    config = dataclasses.replace(config, eval=dataclasses.replace(config.eval, model="no-model-needed"))
    with pytest.raises(EvaluationError, match=rf"the {VIDEOS} 'test' videos of .* are all unlabelled .* "
                       r"`dualvad detect VIDEO_OR_FOLDER --run .*`$"):
        run_evaluate(config)


def test_a_scorer_trained_on_other_segments_is_refused_naming_each_setting(own_run, tmp_path):
    """Same feature dimension, another K: the scores would mean nothing, so the stage refuses before any Ray
    work and names the setting with both values and the override that fixes it."""
    config, labelled, _ = own_run
    other = tmp_path / "other-run"
    shutil.copytree(open_run(labelled.run).path(paths.SCORER), other / paths.SCORER)
    record = read_record(open_run(labelled.run), paths.SEGMENTS)
    record["settings"]["segments"] = 16
    (other / paths.SEGMENTS).mkdir(parents=True)
    (other / paths.SEGMENTS / paths.STAGE_FILE).write_text(json.dumps(record))
    published = read_record(open_run(config.run), paths.SCORES)  # another test may have scored this run
    with pytest.raises(StageError, match=rf"^the scorer in {other}/scorer was trained on other segments "
                       r"\(ingest.segments: 16 in the scorer's run, 8 here\): ingest this run again with "
                       r"`ingest.segments=16`, or train a scorer on these segments$"):
        run_score(dataclasses.replace(config, score=ScoreConfig(scorer_run=str(other))))
    assert read_record(open_run(config.run), paths.SCORES) == published  # nothing replaced
