"""The scoring stage: the trained segment scorer over every video, as a Ray Data actor pool.

Input is ``RUN/segments`` (one Parquet part holds whole videos) and ``RUN/scorer``, output ``RUN/scores``
(``video_id, segment_index, score``). Each actor loads the scorer once and scores one part file per call,
a few hundred videos in one batched forward pass. The stage runner (:mod:`dualvad.stages`) skips a
finished run with the same segments and scorer, resumes an interrupted one, and replaces the scores only
once every video is scored.
"""

from __future__ import annotations

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
from dualvad.config import DualVADConfig
from dualvad.errors import MissingInputError, StageError
from dualvad.pipeline.parts import PartWriter
from dualvad.pipeline.runtime import actor_pool, ensure_ray
from dualvad.rundir import RunDir, open_run
from dualvad.scorer.data import video_set_from_segments
from dualvad.scorer.trained import load_from_run
from dualvad.stages import (
    CorruptInputError,
    Skipped,
    Stage,
    StageContext,
    corrupt_message,
    read_input,
    run_stage,
)

log = logging.getLogger(__name__)

STAGE = Stage("score", paths.SCORES, inputs=(paths.SEGMENTS, paths.SCORER))
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

    def __init__(self, run_uri: str) -> None:
        self.run = open_run(run_uri)
        self._local = tempfile.TemporaryDirectory(prefix="dualvad-scorer-")
        self.scorer = load_from_run(self.run, self._local.name)

    def __call__(self, batch: pa.Table) -> pa.Table:
        """batch: column ``path`` of segments part files -> score rows of all their videos."""
        return pa.concat_tables([self._score_file(path) for path in batch.column("path").to_pylist()])

    def _score_file(self, path: str) -> pa.Table:
        videos = video_set_from_segments(pq.read_table(path, filesystem=self.run.fs),
                                         categories=self.scorer.categories)
        scores = self.scorer.score(videos.features)  # (N, K)
        n, k = scores.shape
        return pa.table({S.VIDEO_ID: np.repeat(np.array(videos.video_ids, dtype=object), k),
                         S.SEGMENT_INDEX: np.tile(np.arange(k, dtype=np.int32), n),
                         S.SCORE: scores.reshape(-1)}, schema=S.SCORES_SCHEMA)


def run_score(config: DualVADConfig, force: bool = False) -> ScoreSummary | Skipped:
    """Score every ingested video with ``RUN/scorer/model``; see the module docstring."""
    return run_stage(STAGE, open_run(config.run), {}, lambda context: _score(context, config),
                     config.stages, force, effective=config)


def _score(context: StageContext, config: DualVADConfig) -> ScoreSummary:
    started = time.perf_counter()
    run = context.run
    ids = read_input(run, paths.SEGMENTS, columns=list(SEGMENT_KEY), unique=SEGMENT_KEY)
    if ids is None:
        raise MissingInputError(f"{run.path(paths.SEGMENTS)} holds no segments: run `dualvad ingest` first")
    check_scorer(run)
    done = context.staged_video_ids()
    todo, total, resumed = _files_to_score(run, run.parquet_files(paths.SEGMENTS), done)
    if todo:
        ensure_ray(config.ray)
        _score_files(context, todo, total - resumed, config.scorer.score_workers)
    return ScoreSummary(total, resumed, total - resumed, time.perf_counter() - started,
                        run.path(paths.SCORES))


def check_scorer(run: RunDir) -> None:
    """Load ``RUN/scorer/model`` once in the driver, so that a corrupt checkpoint is one line naming it,
    before any Ray work.

    Raises:
        CorruptInputError: the checkpoint's files cannot be read.
    """
    with tempfile.TemporaryDirectory(prefix="dualvad-scorer-") as local:
        try:
            load_from_run(run, local)
        except StageError:  # missing or stale: those errors already say what to do
            raise
        except (OSError, RuntimeError, EOFError, ValueError, KeyError, pickle.UnpicklingError) as error:
            where = run.path(paths.SCORER, paths.SCORER_MODEL_DIR)
            raise CorruptInputError(corrupt_message(where, paths.SCORER, error)) from error


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


def _score_files(context: StageContext, files: list[str], videos: int, workers: int | None) -> None:
    """Score ``files`` (segments files holding ``videos`` videos to score) with an actor pool."""
    dataset = ray.data.from_items([{"path": f} for f in files], override_num_blocks=len(files)).map_batches(
        ScoreWorker,
        fn_constructor_kwargs={"run_uri": context.run.uri},
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
