"""The scoring stage: the trained segment scorer over every video, as a Ray Data actor pool.

Input is ``RUN/segments`` (one Parquet part holds whole videos) and ``RUN/scorer``, or with
``score.scorer_run=OTHER_RUN`` that run's scorer (its URI is then a setting of the stage and its scorer's
fingerprint an input, so a change of either redoes the scores), output ``RUN/scores``
(``video_id, segment_index, score``). Each actor loads the scorer once and scores one part file per call,
a few hundred videos in one batched forward pass. The stage runner (:mod:`dualvad.stages.runner`) skips a
finished run with the same segments and scorer, resumes an interrupted one, and replaces the scores only
once every video is scored.
"""

from __future__ import annotations

import dataclasses
import logging
import pickle
import tempfile
import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray

from dualvad import console, paths
from dualvad import schema as S
from dualvad.config import DualVADConfig, ScoreConfig
from dualvad.errors import MissingInputError, StageError
from dualvad.pipeline.parts import PartWriter
from dualvad.pipeline.runtime import actor_pool, ensure_ray
from dualvad.rundir import RunDir, open_run
from dualvad.scorer.data import scoring_features, video_set_from_segments, videos_by_segment_count
from dualvad.scorer.trained import load_from_run
from dualvad.stages.records import (
    CorruptInputError,
    corrupt_message,
    input_fingerprint,
    read_input,
    read_record,
)
from dualvad.stages.registry import stage_named
from dualvad.stages.runner import Skipped, StageContext, run_stage
from dualvad.stages.settings import Section
from dualvad.video.config import SETTINGS_BEFORE

log = logging.getLogger(__name__)

STAGE = stage_named("score")  # with the run's own scorer
FOREIGN_STAGE = dataclasses.replace(STAGE, inputs=(paths.SEGMENTS,))  # score.scorer_run: see run_score
SEGMENT_KEY = (S.VIDEO_ID, S.SEGMENT_INDEX)


@dataclass(frozen=True)
class ScoreSummary:
    videos: int
    resumed: int  # scored by an interrupted earlier run
    scored: int
    seconds: float
    output: str

    def __str__(self) -> str:
        return (f"score: {self.videos} videos ({self.resumed} from an interrupted run, "
                f"{self.scored} scored), "
                f"{self.seconds:.1f} s -> {self.output}")


class ScoreWorker:
    """Ray Data actor: holds the trained scorer; scores whole segments part files."""

    def __init__(self, run_uri: str, scorer_run_uri: str) -> None:
        self.run = open_run(run_uri)
        self._local = tempfile.TemporaryDirectory(prefix="dualvad-scorer-")
        self.scorer = load_from_run(open_run(scorer_run_uri), self._local.name)

    def __call__(self, batch: pa.Table) -> pa.Table:
        """batch: column ``path`` of segments part files -> score rows of all their videos."""
        return pa.concat_tables([self._score_file(path) for path in batch.column("path").to_pylist()])

    def _score_file(self, path: str) -> pa.Table:
        # videos of one K at a time: test videos kept one segment per snippet differ in K
        return pa.concat_tables([self._score_videos(group) for group in
                                 videos_by_segment_count(pq.read_table(path, filesystem=self.run.fs))])

    def _score_videos(self, table: pa.Table) -> pa.Table:
        """Score rows of ``table``'s videos, which all have the same number of segments K."""
        videos = video_set_from_segments(table, categories=self.scorer.categories)
        scores = self.scorer.score(scoring_features(videos, self.scorer.config.test_crop))  # (N, K)
        n, k = scores.shape
        return pa.table({S.VIDEO_ID: np.repeat(np.array(videos.video_ids, dtype=object), k),
                         S.SEGMENT_INDEX: np.tile(np.arange(k, dtype=np.int32), n),
                         S.SCORE: scores.reshape(-1)}, schema=S.SCORES_SCHEMA)


def run_score(config: DualVADConfig, force: bool = False) -> ScoreSummary | Skipped:
    """Score every ingested video with ``RUN/scorer/model``, or ``score.scorer_run``'s; see the module
    docstring.

    Raises:
        MissingInputError: no segments, or no trained scorer where the config says (one line with the fix).
    """
    run = open_run(config.run)
    source = scorer_run(run, config.score)
    if source.uri == run.uri:
        # the first missing input is named first: without segments the runner says to run ingest
        if run.exists(paths.SEGMENTS) and not run.exists(paths.SCORER):
            raise MissingInputError(f"{run.path(paths.SCORER)} does not exist: run `dualvad train-scorer` "
                                    "first, or score with another run's scorer: score.scorer_run=OTHER_RUN")
        # no settings: the fingerprint of runs scored before score.scorer_run existed stays the same
        return run_stage(STAGE, run, {}, lambda context: _score(context, config, run),
                         config.stages, force, effective=config)
    try:
        scorer = input_fingerprint(source, paths.SCORER)
    except MissingInputError as error:
        raise MissingInputError(f"score.scorer_run={config.score.scorer_run}: {error}") from None
    settings = Section({"scorer_run": source.uri}, ScoreConfig)
    return run_stage(FOREIGN_STAGE, run, settings, lambda context: _score(context, config, source),
                     config.stages, force, external={"scorer": scorer}, effective=config)


def scorer_run(run: RunDir, settings: ScoreConfig) -> RunDir:
    """The run whose ``scorer/`` scores ``run``: ``score.scorer_run`` (path or URI), else ``run`` itself."""
    return open_run(settings.scorer_run) if settings.scorer_run else run


def _score(context: StageContext, config: DualVADConfig, source: RunDir) -> ScoreSummary:
    started = time.perf_counter()
    run = context.run
    ids = read_input(run, paths.SEGMENTS, columns=list(SEGMENT_KEY), unique=SEGMENT_KEY)
    if ids is None:
        raise MissingInputError(f"{run.path(paths.SEGMENTS)} holds no segments: run `dualvad ingest` first")
    files = run.parquet_files(paths.SEGMENTS)
    if source.uri != run.uri:
        check_same_segments(source, run)
    check_scorer(source, _feature_dim(run, files[0]))
    done = context.staged_video_ids()
    todo, total, resumed = _files_to_score(run, files, done)
    if todo:
        ensure_ray(config.ray)
        _score_files(context, todo, source, total - resumed, config.scorer.score_workers)
    return ScoreSummary(total, resumed, total - resumed, time.perf_counter() - started,
                        run.path(paths.SCORES))


def check_scorer(run: RunDir, feature_dim: int | None = None) -> None:
    """Load ``RUN/scorer/model`` once in the driver, so that a corrupt checkpoint, or one trained on other
    features than the segments' ``feature_dim``, is one line naming it, before any Ray work.

    Raises:
        CorruptInputError: the checkpoint's files cannot be read.
        StageError: the scorer was trained on features of another dimension.
    """
    with tempfile.TemporaryDirectory(prefix="dualvad-scorer-") as local:
        try:
            scorer = load_from_run(run, local)
        except StageError:  # missing or stale: those errors already say what to do
            raise
        except (OSError, RuntimeError, EOFError, ValueError, KeyError, pickle.UnpicklingError) as error:
            where = run.path(paths.SCORER, paths.SCORER_MODEL_DIR)
            raise CorruptInputError(corrupt_message(where, paths.SCORER, error)) from error
    if feature_dim is not None and feature_dim != scorer.feature_dim:
        raise StageError(f"the scorer in {run.path(paths.SCORER)} was trained on {scorer.feature_dim}-dim "
                         f"features, the segments hold {feature_dim}-dim ones: ingest with that run's "
                         "ingest settings (its segments/config.yaml), or score with a scorer trained on "
                         "these features")


#: The ingest settings that make a segment's features what they are (``ingest.max_pixels`` only refuses
#: videos; ``ingest.clip_model`` matters to the clip feature alone).
FEATURE_SETTINGS = ("segments", "frames_per_segment", "feature", "decode_width", "decode_height",
                    "snap_to_keyframes", "decode_window_s")


def check_same_segments(source: RunDir, run: RunDir) -> None:
    """A scorer scores segments like those it was trained on: same K, frames per segment, feature and
    decode size, as the two runs' ingest records say. A scorer run without that record (a scorer copied on
    its own) is used as it is, with a warning.

    Raises:
        StageError: the settings differ; names each one with both values.
    """
    theirs, ours = read_record(source, paths.SEGMENTS), read_record(run, paths.SEGMENTS)
    if theirs is None or ours is None:
        log.warning("score: %s has no ingest record to compare segments with; scoring as it is",
                    source.path(paths.SEGMENTS) if theirs is None else run.path(paths.SEGMENTS))
        return
    scorer_run, this_run = theirs["settings"], ours["settings"]
    clip = "clip" in (scorer_run.get("feature"), this_run.get("feature"))
    keys = FEATURE_SETTINGS + (("clip_model",) if clip else ())
    def value(settings: dict, key: str) -> object:
        return settings.get(key, SETTINGS_BEFORE.get(key))

    differ = {key: (value(scorer_run, key), value(this_run, key)) for key in keys
              if value(scorer_run, key) != value(this_run, key)}
    if differ:
        both = "; ".join(f"ingest.{key}: {scorer_value!r} in the scorer's run, {our_value!r} here"
                         for key, (scorer_value, our_value) in differ.items())
        fix = " ".join(f"ingest.{key}={scorer_value}" for key, (scorer_value, _) in differ.items())
        raise StageError(f"the scorer in {source.path(paths.SCORER)} was trained on other segments ({both}): "
                         f"ingest this run again with `{fix}`, or train a scorer on these segments")


def _feature_dim(run: RunDir, path: str) -> int:
    """The length of the first feature vector in segments file ``path``."""
    first = pq.ParquetFile(path, filesystem=run.fs).read_row_group(0, columns=[S.FEATURE])
    return len(first[S.FEATURE][0])


def _files_to_score(run: RunDir, files: list[str], scored: set[str]) -> tuple[list[str], int, int]:
    """(segments files holding unscored videos, total videos, videos already scored)."""
    todo, total, skipped = [], 0, 0
    for path in files:
        ids = set(pq.read_table(path, filesystem=run.fs, columns=[S.VIDEO_ID])[S.VIDEO_ID].to_pylist())
        total += len(ids)
        if ids <= scored:
            skipped += len(ids)
        else:
            todo.append(path)
    return todo, total, skipped


def _score_files(context: StageContext, files: list[str], source: RunDir, videos: int,
                 workers: int | None) -> None:
    """Score ``files`` (segments files holding ``videos`` videos to score) with ``source``'s scorer, in an
    actor pool."""
    dataset = ray.data.from_items([{"path": f} for f in files], override_num_blocks=len(files)).map_batches(
        ScoreWorker,
        fn_constructor_kwargs={"run_uri": context.run.uri, "scorer_run_uri": source.uri},
        batch_size=1,
        batch_format="pyarrow",
        compute=actor_pool(workers, len(files)),
        num_cpus=1,
    )
    with PartWriter(context.out, S.SCORES_SCHEMA, flush_videos=1,
                    flush_seconds=context.settings.flush_seconds) as writer, \
            console.bar("score", videos, "videos") as advance:
        for batch in dataset.iter_batches(batch_format="pyarrow", batch_size=None):
            writer.add(batch)  # one segments file's videos: written as one part
            advance(len(pc.unique(batch[S.VIDEO_ID])))
