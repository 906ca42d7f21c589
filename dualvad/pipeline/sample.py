"""The sample stage: pick each video's frames with a sampling strategy -> ``RUN/samples``.

Reads ``RUN/segments`` (bounds, labels, annotations) and ``RUN/scores`` and writes one row
per video (DESIGN.md): the selected frames, how many fell in each segment, their scores.
Allocation costs microseconds per video, so the stage runs in the driver, no Ray needed; a
video too short for the budget is a recorded failure (``RUN/samples/_failures.parquet``).
Re-running with the same settings and inputs skips the work; other settings replace it.
"""

from __future__ import annotations

import json
import time
import zlib
from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa

from dualvad import schema as S
from dualvad.config import DualVADConfig, SampleConfig
from dualvad.errors import MissingInputError
from dualvad.pipeline.parts import PartWriter
from dualvad.rundir import RunDir, open_run
from dualvad.video.sampling import allocate

STAGE = "samples"
SETTINGS_FILE = "_settings.json"
FAILURES_FILE = "_failures.parquet"
_SEGMENT_COLUMNS = [S.VIDEO_ID, S.SEGMENT_INDEX, S.START_FRAME, S.END_FRAME, S.FPS, S.NUM_FRAMES,
                    S.LABEL, S.SPLIT, S.VIDEO_PATH, S.GT_INTERVALS]


@dataclass(frozen=True)
class SampleSummary:
    videos: int
    frames: int
    failures: int
    skipped: bool
    seconds: float
    output: str

    def __str__(self) -> str:
        if self.skipped:
            return f"sample: already done with these settings -> {self.output}"
        return (f"sample: {self.videos} videos, {self.frames} frames selected, {self.failures} failures, "
                f"{self.seconds:.2f} s -> {self.output}")


def run_sample(config: DualVADConfig) -> SampleSummary:
    """Allocate ``sample.budget`` frames per video with ``sample.strategy``."""
    started = time.perf_counter()
    run, settings = open_run(config.run), config.sample
    table = segments_with_scores(run)
    fingerprint = {"sample": asdict(settings), "inputs": _input_files(run)}
    if _already_done(run, fingerprint):
        return SampleSummary(0, 0, 0, True, 0.0, run.path(STAGE))
    for path in run.parquet_files(STAGE):
        run.fs.delete_file(path)
    rows, failures = sample_videos(table, settings)
    writer = PartWriter(run, STAGE, S.SAMPLES_SCHEMA)
    writer.add(pa.Table.from_pylist(rows, schema=S.SAMPLES_SCHEMA))
    writer.flush()
    run.write_table(pa.Table.from_pylist(failures, schema=S.FAILURES_SCHEMA), STAGE, FAILURES_FILE)
    run.write_text(json.dumps(fingerprint, indent=2), STAGE, SETTINGS_FILE)
    return SampleSummary(len(rows), sum(len(r[S.FRAMES]) for r in rows), len(failures), False,
                         time.perf_counter() - started, run.path(STAGE))


def segments_with_scores(run: RunDir, extra_columns: tuple[str, ...] = ()) -> pa.Table:
    """The segments table (contract columns the sampler needs, plus ``extra_columns``) with a ``score``
    column, sorted by (video, segment)."""
    segments = run.read_table("segments", columns=[*_SEGMENT_COLUMNS, *extra_columns])
    scores = run.read_table("scores")
    if segments is None or scores is None:
        missing = "segments (run `dualvad ingest`)" if segments is None else "scores (run `dualvad score`)"
        raise MissingInputError(f"{run.uri} has no {missing}")
    # Both tables hold one row per (video, segment): align by sorting (Arrow joins cannot
    # carry the list-typed annotation column).
    order = [(S.VIDEO_ID, "ascending"), (S.SEGMENT_INDEX, "ascending")]
    segments, scores = segments.sort_by(order), scores.sort_by(order)
    keys = [S.VIDEO_ID, S.SEGMENT_INDEX]
    if not segments.select(keys).equals(scores.select(keys)):
        raise MissingInputError(f"{run.path('scores')} does not cover exactly the ingested segments: "
                                "re-run `dualvad score`")
    return segments.append_column(S.SCORE, scores[S.SCORE])


def _input_files(run: RunDir) -> list[str]:
    return [*run.parquet_files("segments"), *run.parquet_files("scores")]


def _already_done(run: RunDir, fingerprint: dict) -> bool:
    if not run.exists(STAGE, SETTINGS_FILE) or not run.parquet_files(STAGE):
        return False
    with run.fs.open_input_stream(run.path(STAGE, SETTINGS_FILE)) as stream:
        return json.loads(stream.read()) == fingerprint


def sample_videos(table: pa.Table, settings: SampleConfig) -> tuple[list[dict], list[dict]]:
    """One samples row per video (or one failure row when the budget does not fit); ``table`` as
    :func:`segments_with_scores` returns it."""
    columns = table.to_pydict()
    video_ids = columns[S.VIDEO_ID]
    starts = np.flatnonzero([i == 0 or video_ids[i] != video_ids[i - 1] for i in range(len(video_ids))])
    rows, failures = [], []
    for first, last in zip(starts, [*starts[1:], len(video_ids)], strict=True):
        try:
            rows.append(_sample_one(columns, first, last, settings))
        except ValueError as error:
            failures.append({S.VIDEO_ID: video_ids[first], S.VIDEO_PATH: columns[S.VIDEO_PATH][first],
                             S.REASON: f"{video_ids[first]}: {error}"})
    return rows, failures


def _sample_one(columns: dict, first: int, last: int, settings: SampleConfig) -> dict:
    scores = np.asarray(columns[S.SCORE][first:last], dtype=np.float64)
    bounds = np.stack([columns[S.START_FRAME][first:last], columns[S.END_FRAME][first:last]], axis=1)
    video_id = columns[S.VIDEO_ID][first]
    allocation = allocate(settings.strategy, scores, bounds, settings.budget, tau=settings.tau,
                          floor=settings.floor, offset=settings.cdf_offset,
                          seed=settings.seed + zlib.crc32(video_id.encode()))
    segment_of_frame = np.searchsorted(bounds[:, 1], allocation.frames, side="right")
    return {
        S.VIDEO_ID: video_id, S.VIDEO_PATH: columns[S.VIDEO_PATH][first],
        S.LABEL: columns[S.LABEL][first], S.SPLIT: columns[S.SPLIT][first],
        S.FPS: columns[S.FPS][first], S.NUM_FRAMES: columns[S.NUM_FRAMES][first],
        S.STRATEGY: settings.strategy, S.BUDGET: settings.budget,
        S.FRAMES: allocation.frames.tolist(), S.PER_SEGMENT: allocation.per_segment.tolist(),
        S.FRAME_SCORES: scores[segment_of_frame].tolist(), S.SEGMENT_SCORES: scores.tolist(),
        S.GT_INTERVALS: columns[S.GT_INTERVALS][first],
    }
