"""The ingest stage: corpus videos -> K segments each, one feature vector per segment.

A Ray Data pipeline with one row per video: Ray tasks (or, for an extractor with a model, an
actor pool) decode each video with decord (a fixed number of small frames per segment, so
memory does not grow with video length), extract features and emit the segment rows. A video
that cannot be decoded becomes a failure row with its reason; the stage finishes and records
it in ``RUN/segments/_failures.parquet``. Videos already written by an earlier run are skipped.
"""

from __future__ import annotations

import json
import logging
import time
import traceback
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray

from dualvad import schema as S
from dualvad.config import DualVADConfig, IngestConfig
from dualvad.corpus.layout import VideoRecord
from dualvad.corpus.readers import read_corpus
from dualvad.errors import StageError
from dualvad.pipeline.parts import PartWriter
from dualvad.pipeline.runtime import actor_pool, ensure_ray
from dualvad.rundir import RunDir, open_run
from dualvad.scorer.features import (
    SegmentFeatureExtractor,
    VideoFeatures,
    build_extractor,
    extract_video_features,
)
from dualvad.video.decode import VideoDecodeError
from dualvad.video.segments import interval_fraction

log = logging.getLogger(__name__)

STAGE = "segments"
FAILURES_FILE = "_failures.parquet"
_INTERVALS = "intervals_json"  # input column: temporal annotation as JSON, null when none
# Output of the worker: segment rows and failure rows in one table, told apart by REASON.
_WORKER_SCHEMA = S.SEGMENTS_SCHEMA.append(pa.field(S.REASON, pa.string()))


class IngestError(StageError):
    """The stage failed as a whole (too many bad videos, or an unusable corpus)."""


@dataclass(frozen=True)
class IngestSummary:
    """What one ``ingest`` run did."""

    videos: int  # in the corpus
    skipped: int  # already ingested by an earlier run
    processed: int  # decoded in this run (including failures)
    segments: int  # rows written in this run
    failures: int
    seconds: float
    output: str

    def __str__(self) -> str:
        return (
            f"ingest: {self.videos} videos ({self.skipped} already done, {self.processed} "
            f"processed), {self.segments} segments written, {self.failures} failures, "
            f"{self.seconds:.1f} s -> {self.output}"
        )


def segment_table(record: VideoRecord, video: VideoFeatures) -> pa.Table:
    """The segments-table rows (DESIGN.md contract) of one decoded video."""
    k = len(video.bounds)
    fractions = interval_fraction(video.bounds, record.intervals)
    return pa.table(
        {
            S.VIDEO_ID: [record.video_id] * k,
            S.SEGMENT_INDEX: np.arange(k, dtype=np.int32),
            S.START_FRAME: video.bounds[:, 0],
            S.END_FRAME: video.bounds[:, 1],
            S.FPS: np.full(k, video.fps),
            S.NUM_FRAMES: np.full(k, video.num_frames, dtype=np.int64),
            S.FEATURE: pa.FixedSizeListArray.from_arrays(
                pa.array(video.features.reshape(-1), pa.float32()), video.features.shape[1]
            ).cast(pa.list_(pa.float32())),
            S.LABEL: [record.label] * k,
            S.GT_FRACTION: pa.array(fractions, pa.float32()) if fractions is not None
            else pa.nulls(k, pa.float32()),
            S.SPLIT: [record.split] * k,
            S.VIDEO_PATH: [record.path] * k,
            S.GT_INTERVALS: [_flatten(record.intervals)] * k,
        },
        schema=S.SEGMENTS_SCHEMA,
    )


def _flatten(intervals: tuple[tuple[int, int], ...] | None) -> list[int] | None:
    return None if intervals is None else [bound for interval in intervals for bound in interval]


def failure_table(video_id: str, path: str, reason: str) -> pa.Table:
    """One failure row in the worker's output schema (segment columns null)."""
    columns = {name: pa.nulls(1, _WORKER_SCHEMA.field(name).type) for name in _WORKER_SCHEMA.names}
    columns.update({S.VIDEO_ID: pa.array([video_id]), S.VIDEO_PATH: pa.array([path]),
                    S.REASON: pa.array([reason])})
    return pa.table(columns, schema=_WORKER_SCHEMA)


def segment_videos(batch: pa.Table, extractor: SegmentFeatureExtractor, config: IngestConfig) -> pa.Table:
    """batch: input rows (video_id, video_path, label, split, intervals_json) -> segment rows and
    failure rows (``reason`` set) of those videos."""
    return pa.concat_tables([_segment_one(row, extractor, config) for row in batch.to_pylist()])


def _segment_one(row: dict[str, Any], extractor: SegmentFeatureExtractor, config: IngestConfig) -> pa.Table:
    record = _record_from_row(row)
    try:
        video = extract_video_features(record.path, extractor, config.segments, config.frames_per_segment,
                                       config.decode_threads, config.snap_to_keyframes)
    except VideoDecodeError as error:
        # Recorded, not swallowed: the failure row reaches _failures.parquet and the summary.
        return failure_table(record.video_id, record.path, str(error))
    except ValueError as error:  # too short for K segments
        return failure_table(record.video_id, record.path, f"{record.path}: {error}")
    except Exception as error:  # noqa: BLE001 - any decoder crash is this video's failure
        reason = f"{record.path}: unexpected {type(error).__name__}: {error}"
        log.error("%s\n%s", reason, traceback.format_exc())
        return failure_table(record.video_id, record.path, reason)
    table = segment_table(record, video)
    return table.append_column(S.REASON, pa.nulls(table.num_rows, pa.string()))


def _extractor(config: IngestConfig) -> SegmentFeatureExtractor:
    return build_extractor(config.feature, width=config.decode_width, height=config.decode_height,
                           model=config.clip_model)


class SegmentWorker:
    """Ray Data actor for extractors with a model (``clip``): loads it once, then segments videos."""

    def __init__(self, config: IngestConfig) -> None:
        self.config, self.extractor = config, _extractor(config)

    def __call__(self, batch: pa.Table) -> pa.Table:
        return segment_videos(batch, self.extractor, self.config)


def segment_videos_task(batch: pa.Table, config: IngestConfig) -> pa.Table:
    """Ray Data task for weightless extractors (``motion``): building one costs nothing, and
    tasks run in Ray's pooled worker processes instead of starting actors for every stage run."""
    return segment_videos(batch, _extractor(config), config)


def run_ingest(config: DualVADConfig) -> IngestSummary:
    """Ingest ``config.corpus`` into ``config.run``/segments (see module docstring).

    Raises:
        IngestError: more than ``ingest.max_failure_share`` of the corpus failed to decode
            (the failures are written first).
    """
    started = time.perf_counter()
    records = read_corpus(config.corpus)
    if not records:
        raise IngestError(f"corpus {config.corpus} lists no videos in annotations/")
    run = open_run(config.run)
    done = _ingested_video_ids(run)
    todo = [r for r in records if r.video_id not in done]
    log.info("ingest: %d videos, %d already ingested, %d to do", len(records), len(done), len(todo))
    segments, failures = 0, _empty_failures()
    if todo:
        ensure_ray(config.ray)
        segments, failures = _ingest_videos(run, todo, config.ingest)
    # This run's failures replace earlier ones: those videos were retried above.
    run.write_table(failures, STAGE, FAILURES_FILE)
    summary = IngestSummary(
        len(records), len(records) - len(todo), len(todo), segments, failures.num_rows,
        time.perf_counter() - started, run.path(STAGE),
    )
    _check_failure_share(summary, failures, config.ingest.max_failure_share, run)
    return summary


def _ingest_videos(run: RunDir, todo: list[VideoRecord], config: IngestConfig) -> tuple[int, pa.Table]:
    """Run the Ray Data pipeline over ``todo``; returns (segment rows written, failures).

    One streaming pass: the driver receives each video's rows as the workers finish them and
    writes a Parquet part every ``ROWS_PER_PART`` rows, so an interrupted stage keeps what it
    finished and a re-run skips it.
    """
    rows = [_row_from_record(r) for r in todo]
    if config.feature == "motion":
        udf = {"fn": segment_videos_task, "fn_kwargs": {"config": config},
               "concurrency": min(config.workers, len(rows)) if config.workers else None}
    else:
        udf = {"fn": SegmentWorker, "fn_constructor_kwargs": {"config": config},
               "compute": actor_pool(config.workers, len(rows))}
    dataset = ray.data.from_items(rows, override_num_blocks=len(rows)).map_batches(
        **udf, batch_size=1, batch_format="pyarrow", num_cpus=config.cpus_per_worker,
    )
    writer, failures, done = PartWriter(run, STAGE, S.SEGMENTS_SCHEMA), [], set()
    for batch in dataset.iter_batches(batch_format="pyarrow", batch_size=None):
        failed = pc.is_valid(batch[S.REASON])
        failures.append(batch.filter(failed).select(S.FAILURES_SCHEMA.names))
        writer.add(batch.filter(pc.invert(failed)).drop_columns([S.REASON]))
        _log_progress(done, batch, len(rows), sum(f.num_rows for f in failures))
    writer.flush()
    return writer.rows_written, pa.concat_tables([_empty_failures(), *failures]).cast(S.FAILURES_SCHEMA)


def _log_progress(done: set[str], batch: pa.Table, total: int, failed: int) -> None:
    """Log every ~5% of the videos (Ray Data's progress bar counts blocks, this counts videos)."""
    before = len(done)
    done.update(batch.column(S.VIDEO_ID).unique().to_pylist())
    step = max(1, total // 20)
    if len(done) // step > before // step or len(done) == total:
        log.info("ingest: %d/%d videos decoded, %d failed", len(done), total, failed)


def _empty_failures() -> pa.Table:
    return pa.Table.from_pylist([], schema=S.FAILURES_SCHEMA)


def _ingested_video_ids(run: RunDir) -> set[str]:
    table = run.read_table(STAGE, columns=[S.VIDEO_ID])
    return set(table.column(S.VIDEO_ID).unique().to_pylist()) if table is not None else set()


def _check_failure_share(summary: IngestSummary, failures: pa.Table, limit: float, run: RunDir) -> None:
    if summary.failures == 0 or summary.failures / summary.videos <= limit:
        return
    reasons = "; ".join(failures.column(S.REASON).to_pylist()[:3])
    raise IngestError(
        f"{summary.failures} of {summary.videos} videos failed to decode "
        f"(more than ingest.max_failure_share={limit}); first reasons: {reasons}. "
        f"All failures are listed in {run.path(STAGE, FAILURES_FILE)}: fix or remove those "
        f"files, or raise ingest.max_failure_share."
    )


def _row_from_record(record: VideoRecord) -> dict[str, Any]:
    intervals = None if record.intervals is None else json.dumps([list(i) for i in record.intervals])
    return {S.VIDEO_ID: record.video_id, S.VIDEO_PATH: record.path, S.LABEL: record.label,
            S.SPLIT: record.split, _INTERVALS: intervals}


def _record_from_row(row: dict[str, Any]) -> VideoRecord:
    raw = row[_INTERVALS]
    intervals = None if raw is None else tuple((int(s), int(e)) for s, e in json.loads(raw))
    return VideoRecord(row[S.VIDEO_ID], row[S.VIDEO_PATH], row[S.LABEL], row[S.SPLIT], intervals)
