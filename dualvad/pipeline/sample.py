"""The sample stage: pick each video's frames with a sampling strategy -> ``RUN/samples``.

Reads ``RUN/segments`` (bounds, labels, annotations, keyframes) and ``RUN/scores`` and writes one row
per video (DESIGN.md): the selected frames, how many fell in each segment, their scores.
Allocation costs microseconds per video, so the stage runs in the driver, no Ray needed; a
video too short for the budget is a recorded failure (``RUN/samples/_failures.parquet``).
The stage runner skips a re-run with the same inputs and ``sample.*`` settings.
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dualvad import paths
from dualvad import schema as S
from dualvad.config import DualVADConfig, SampleConfig
from dualvad.errors import MissingInputError
from dualvad.pipeline.parts import PartWriter
from dualvad.rundir import RunDir, open_run
from dualvad.stages.recorded import recorded_decode_window
from dualvad.stages.records import CorruptInputError, corrupt_message, read_input
from dualvad.stages.registry import stage_named
from dualvad.stages.runner import Skipped, StageContext, run_stage
from dualvad.stages.settings import section
from dualvad.video.sampling import NO_DECODE_WINDOW, DecodeWindow, allocate, place_in_decode_windows

STAGE = stage_named("sample")
SEGMENT_KEY = (S.VIDEO_ID, S.SEGMENT_INDEX)
_SEGMENT_COLUMNS = [S.VIDEO_ID, S.SEGMENT_INDEX, S.START_FRAME, S.END_FRAME, S.FPS, S.NUM_FRAMES,
                    S.LABEL, S.SPLIT, S.VIDEO_PATH, S.GT_INTERVALS]


@dataclass(frozen=True)
class SampleSummary:
    videos: int
    frames: int
    failures: int
    seconds: float
    output: str

    def __str__(self) -> str:
        return (f"sample: {self.videos} videos, {self.frames} frames selected, {self.failures} failures, "
                f"{self.seconds:.2f} s -> {self.output}")


def run_sample(config: DualVADConfig, force: bool = False) -> SampleSummary | Skipped:
    """Allocate ``sample.budget`` frames per video with ``sample.strategy``."""
    return run_stage(STAGE, open_run(config.run), section(config.sample),
                     lambda context: _sample(context, config.sample), config.stages, force,
                     effective=config)


def _sample(context: StageContext, settings: SampleConfig) -> SampleSummary:
    started = time.perf_counter()
    window = recorded_decode_window(context.run)
    table = segments_with_scores(context.run)
    if settings.within_decode_window and window.seconds > 0 and S.KEYFRAMES not in table.column_names:
        raise MissingInputError(
            f"{context.run.path(paths.SEGMENTS)} was ingested before ingest recorded each video's keyframes, "
            "which sample.within_decode_window places frames by: re-run `dualvad ingest --force`, or sample "
            "with sample.within_decode_window=false (frames where the strategy puts them)")
    rows, failures = sample_videos(table, settings, window)
    context.videos = len(rows) + len(failures)
    context.record_failures(failures)
    with PartWriter(context.out, S.SAMPLES_SCHEMA) as writer:
        writer.add(pa.Table.from_pylist(rows, schema=S.SAMPLES_SCHEMA))
    return SampleSummary(len(rows), sum(len(r[S.FRAMES]) for r in rows), len(failures),
                         time.perf_counter() - started, context.run.path(paths.SAMPLES))


def segments_with_scores(run: RunDir, extra_columns: tuple[str, ...] = ()) -> pa.Table:
    """The segments table (contract columns the sampler needs, ``keyframes`` where the run has them, plus
    ``extra_columns``) with a ``score`` column, sorted by (video, segment).

    Raises:
        MissingInputError: no segments or no scores, or scores that do not cover exactly the segments.
        CorruptInputError: an unreadable file, or a (video, segment) pair twice.
    """
    optional = present_columns(run, paths.SEGMENTS, (S.KEYFRAMES,))  # absent from runs ingested before it
    segments = read_input(run, paths.SEGMENTS, columns=[*_SEGMENT_COLUMNS, *optional, *extra_columns],
                          unique=SEGMENT_KEY)
    scores = read_input(run, paths.SCORES, unique=SEGMENT_KEY)
    if segments is None or scores is None:
        missing = "segments (run `dualvad ingest`)" if segments is None else "scores (run `dualvad score`)"
        raise MissingInputError(f"{run.uri} has no {missing}")
    # Both tables hold one row per (video, segment): align by sorting (Arrow joins cannot
    # carry the list-typed annotation column).
    order = [(S.VIDEO_ID, "ascending"), (S.SEGMENT_INDEX, "ascending")]
    segments, scores = segments.sort_by(order), scores.sort_by(order)
    keys = list(SEGMENT_KEY)
    if not segments.select(keys).equals(scores.select(keys)):
        raise MissingInputError(f"{run.path(paths.SCORES)} does not cover exactly the ingested segments: "
                                "re-run `dualvad score --force`")
    return segments.append_column(S.SCORE, scores[S.SCORE])


def present_columns(run: RunDir, output: str, columns: tuple[str, ...]) -> tuple[str, ...]:
    """Those of ``columns`` that ``RUN/<output>``'s Parquet files hold (the first file's schema): columns
    added after a run was made are absent from it.

    Raises:
        CorruptInputError: the first file's schema cannot be read (named, with the stage that writes it).
    """
    files = run.parquet_files(output)
    try:
        names = pq.read_schema(files[0], filesystem=run.fs).names if files else []
    except (OSError, pa.ArrowException) as error:
        raise CorruptInputError(corrupt_message(files[0], output, error)) from error
    return tuple(column for column in columns if column in names)


def sample_videos(table: pa.Table, settings: SampleConfig,
                  window: DecodeWindow = NO_DECODE_WINDOW) -> tuple[list[dict], list[dict]]:
    """One samples row per video (or one failure row when the budget does not fit); ``table`` as
    :func:`segments_with_scores` returns it. With ``settings.within_decode_window``, a video's frames are
    moved into the decode windows the run was ingested with (``window``,
    :func:`~dualvad.stages.recorded.recorded_decode_window`) by the table's ``keyframes``
    (:func:`~dualvad.video.sampling.within_decode_windows`; none: nothing moves)."""
    columns = table.to_pydict()
    video_ids = columns[S.VIDEO_ID]
    starts = np.flatnonzero([i == 0 or video_ids[i] != video_ids[i - 1] for i in range(len(video_ids))])
    rows, failures = [], []
    for first, last in zip(starts, [*starts[1:], len(video_ids)], strict=True):
        try:
            rows.append(_sample_one(columns, first, last, settings, window))
        except ValueError as error:
            failures.append({S.VIDEO_ID: video_ids[first], S.VIDEO_PATH: columns[S.VIDEO_PATH][first],
                             S.REASON: f"{video_ids[first]}: {error}"})
    return rows, failures


def _sample_one(columns: dict, first: int, last: int, settings: SampleConfig, window: DecodeWindow) -> dict:
    scores = np.asarray(columns[S.SCORE][first:last], dtype=np.float64)
    bounds = np.stack([columns[S.START_FRAME][first:last], columns[S.END_FRAME][first:last]], axis=1)
    video_id = columns[S.VIDEO_ID][first]
    allocation = allocate(settings.strategy, scores, bounds, settings.budget, tau=settings.tau,
                          floor=settings.floor, offset=settings.cdf_offset,
                          seed=settings.seed + zlib.crc32(video_id.encode()))
    keyframes = columns[S.KEYFRAMES][first] if S.KEYFRAMES in columns else None  # absent: ingested before
    if keyframes is not None:
        allocation = place_in_decode_windows(allocation, bounds, np.asarray(keyframes, np.int64),
                                             columns[S.FPS][first], window, settings)
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
