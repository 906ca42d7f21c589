"""The scoring stage: the trained segment scorer over every video, as a Ray Data actor pool.

Input is ``RUN/segments`` (one Parquet part holds whole videos), output ``RUN/scores``
(``video_id, segment_index, score``). Each actor loads the scorer once and scores one part
file per call, a few hundred videos in one batched forward pass. Re-running with the same
scorer skips videos already scored; a retrained scorer invalidates the old scores.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray

from dualvad import schema as S
from dualvad.config import DualVADConfig
from dualvad.errors import MissingInputError
from dualvad.pipeline.parts import PartWriter
from dualvad.pipeline.runtime import actor_pool, ensure_ray
from dualvad.rundir import RunDir, open_run
from dualvad.scorer.data import video_set_from_segments
from dualvad.scorer.trained import MODEL_DIR, WEIGHTS_FILE, load_from_run
from dualvad.scorer.trained import STAGE as SCORER_STAGE

log = logging.getLogger(__name__)

STAGE = "scores"
IDENTITY_FILE = "_scorer.json"


@dataclass(frozen=True)
class ScoreSummary:
    videos: int
    skipped: int
    scored: int
    seconds: float
    output: str

    def __str__(self) -> str:
        return (f"score: {self.videos} videos ({self.skipped} already scored, {self.scored} scored), "
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


def run_score(config: DualVADConfig) -> ScoreSummary:
    """Score every ingested video with ``RUN/scorer/model``; see the module docstring."""
    started = time.perf_counter()
    run = open_run(config.run)
    files = run.parquet_files("segments")
    if not files:
        raise MissingInputError(f"{run.path('segments')} holds no segments: run `dualvad ingest` first")
    scored = _scored_video_ids(run, _scorer_identity(run))
    todo, total, skipped = _files_to_score(run, files, scored)
    if todo:
        ensure_ray(config.ray)
        _score_files(run, todo, config.scorer.score_workers)
    return ScoreSummary(total, skipped, total - skipped, time.perf_counter() - started, run.path(STAGE))


def _scorer_identity(run: RunDir) -> str:
    """A hash of the trained weights: scores from other weights are stale."""
    with run.fs.open_input_stream(run.path(SCORER_STAGE, MODEL_DIR, WEIGHTS_FILE)) as stream:
        return hashlib.sha256(stream.read()).hexdigest()[:16]


def _scored_video_ids(run: RunDir, identity: str) -> set[str]:
    """Videos scored by this scorer; scores of another scorer are deleted."""
    previous = None
    if run.exists(STAGE, IDENTITY_FILE):
        with run.fs.open_input_stream(run.path(STAGE, IDENTITY_FILE)) as stream:
            previous = json.loads(stream.read()).get("scorer")
    if previous != identity:
        for path in run.parquet_files(STAGE):
            run.fs.delete_file(path)
        run.write_text(json.dumps({"scorer": identity}), STAGE, IDENTITY_FILE)
        if previous is not None:
            log.info("score: the scorer changed since the last run; re-scoring every video")
        return set()
    table = run.read_table(STAGE, columns=[S.VIDEO_ID])
    return set(table.column(S.VIDEO_ID).unique().to_pylist()) if table is not None else set()


def _files_to_score(run: RunDir, files: list[str], scored: set[str]) -> tuple[list[str], int, int]:
    """(segments files holding unscored videos, total videos, videos skipped)."""
    todo, total, skipped = [], 0, 0
    for path in files:
        ids = set(pq.read_table(path, filesystem=run.fs, columns=[S.VIDEO_ID])[S.VIDEO_ID].to_pylist())
        total += len(ids)
        if ids <= scored:
            skipped += len(ids)
        else:
            todo.append(path)
    return todo, total, skipped


def _score_files(run: RunDir, files: list[str], workers: int | None) -> None:
    dataset = ray.data.from_items([{"path": f} for f in files], override_num_blocks=len(files)).map_batches(
        ScoreWorker,
        fn_constructor_kwargs={"run_uri": run.uri},
        batch_size=1,
        batch_format="pyarrow",
        compute=actor_pool(workers, len(files)),
        num_cpus=1,
    )
    writer = PartWriter(run, STAGE, S.SCORES_SCHEMA)
    for batch in dataset.iter_batches(batch_format="pyarrow", batch_size=None):
        writer.add(batch)
    writer.flush()
