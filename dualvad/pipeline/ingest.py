"""The ingest stage: corpus videos -> K segments each, one feature vector per segment.

A Ray Data pipeline over groups of videos: Ray tasks (or, for an extractor with a model, an
actor pool) decode each video with decord (a fixed number of small frames per segment, so
memory does not grow with video length), extract features and write the group's segment rows
themselves, as one Parquet part in the stage's staging folder named after the group's videos
(:func:`part_name`); the driver receives only a few numbers per video (:data:`SUMMARY_SCHEMA`), so
it never holds a feature. A video that cannot be decoded becomes a failure row with its reason,
recorded in ``RUN/segments/_failures.parquet`` by the stage runner (:mod:`dualvad.stages.runner`), which
also skips a finished ingest of the same corpus and settings and resumes an interrupted one (videos
already written are not decoded again).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import traceback
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import ray

from dualvad import console, paths
from dualvad import schema as S
from dualvad.config import DualVADConfig, IngestConfig
from dualvad.corpus.feature_files import VideoFeatureFiles
from dualvad.corpus.layout import VideoRecord
from dualvad.corpus.readers import read_corpus
from dualvad.errors import StageError
from dualvad.pipeline.ingest_features import feature_columns, scan_corpus, video_from_files
from dualvad.pipeline.runtime import actor_pool, ensure_ray
from dualvad.rundir import RunDir, open_run
from dualvad.scorer.features import (
    SegmentFeatureExtractor,
    VideoFeatures,
    build_extractor,
    ingested_video_features,
)
from dualvad.stages.registry import stage_named
from dualvad.stages.runner import Skipped, StageContext, run_stage
from dualvad.stages.settings import section
from dualvad.storage import resolve
from dualvad.video.decode import VideoDecodeError
from dualvad.video.segments import interval_fraction

log = logging.getLogger(__name__)

# Output of segment_videos: segment rows and failure rows in one table, told apart by REASON.
_WORKER_SCHEMA = S.SEGMENTS_SCHEMA.append(pa.field(S.REASON, pa.string()))

ROWS, PART = "rows", "part"
# What a worker returns to the driver: one row per video, no features (those are in its part file).
SUMMARY_SCHEMA = pa.schema([(S.VIDEO_ID, pa.string()), (S.VIDEO_PATH, pa.string()), (S.REASON, pa.string()),
                            (ROWS, pa.int64()),  # segment rows written (0 for a failure)
                            (PART, pa.string())])  # base name of the part holding them (null for a failure)
TASKS_PER_WORKER = 4  # groups per worker at least, so that a slow group does not leave the others idle


class IngestError(StageError):
    """The stage failed as a whole (too many bad videos, or an unusable corpus)."""


@dataclass(frozen=True)
class IngestSummary:
    """What one ``ingest`` run did."""

    videos: int  # in the corpus
    resumed: int  # ingested by an interrupted earlier run of the same stage
    processed: int  # decoded in this run (including failures)
    segments: int  # rows written in this run
    failures: int
    seconds: float
    output: str
    unlabelled: int = 0  # videos labelled `unlabelled` (all of them for a folder without annotations/)

    def __str__(self) -> str:
        unlabelled = f", {self.unlabelled} of them unlabelled" if self.unlabelled else ""
        return (
            f"ingest: {self.videos} videos{unlabelled} ({self.resumed} from an interrupted run, "
            f"{self.processed} processed), {self.segments} segments written, {self.failures} failures, "
            f"{self.seconds:.1f} s -> {self.output}"
        )


def segment_table(record: VideoRecord, video: VideoFeatures, crops: np.ndarray | None = None,
                  snippets: int | None = None) -> pa.Table:
    """The segments-table rows (DESIGN.md contract) of one decoded video; from feature files
    (``ingest.features``), also its crops' features float32 (K, C, D) (kept where C > 1) and its snippet
    count T."""
    k = len(video.bounds)
    crop_lists = None
    if crops is not None and crops.shape[1] > 1:  # (K, C, D) as K lists of C lists of D, without Python lists
        values = pa.array(crops.reshape(-1), pa.float32())
        per_crop = pa.FixedSizeListArray.from_arrays(values, crops.shape[2])
        crop_lists = pa.FixedSizeListArray.from_arrays(per_crop, crops.shape[1]).cast(
            S.SEGMENTS_SCHEMA.field(S.CROP_FEATURES).type)
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
            S.ANNOTATED_FRAMES: pa.array([record.annotated_frames] * k, pa.int64()),
            S.CROP_FEATURES: crop_lists if crop_lists is not None else pa.nulls(k, S.SEGMENTS_SCHEMA.field(
                S.CROP_FEATURES).type),
            S.SNIPPETS: pa.array([snippets] * k, pa.int64()),
            S.KEYFRAMES: pa.array([None if video.keyframes is None else video.keyframes.tolist()] * k,
                                  pa.list_(pa.int64())),
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


def segment_videos(batch: pa.Table, extractor: SegmentFeatureExtractor | None,
                   config: IngestConfig) -> pa.Table:
    """batch: input rows (video_id, video_path, label, split, gt_intervals) -> segment rows and
    failure rows (``reason`` set) of those videos."""
    return pa.concat_tables([_segment_one(row, extractor, config) for row in batch.to_pylist()])


def _segment_one(row: dict[str, Any], extractor: SegmentFeatureExtractor | None,
                 config: IngestConfig) -> pa.Table:
    record = _record_from_row(row)
    crops, snippets = None, None
    try:
        if config.features:  # from feature files: no frame decoded
            video, crops, snippets = video_from_files(record, row, config)
        else:
            video = ingested_video_features(record.path, extractor, config)
    except VideoDecodeError as error:
        # Recorded, not swallowed: the failure row reaches _failures.parquet and the summary.
        return failure_table(record.video_id, record.path, str(error))
    except ValueError as error:  # too short for K segments; from feature files, also a bad array
        if config.features:
            return failure_table(record.video_id, record.path, f"{record.video_id}: feature files: {error}")
        return failure_table(record.video_id, record.path, f"{record.path}: {error}: lower --segments "
                             "(ingest.segments) to at most its frame count, or leave the video out")
    except Exception as error:  # noqa: BLE001 - any decoder crash is this video's failure
        reason = f"{record.path}: unexpected {type(error).__name__}: {error}"
        log.error("%s\n%s", reason, traceback.format_exc())
        return failure_table(record.video_id, record.path, reason)
    table = segment_table(record, video, crops, snippets)
    return table.append_column(S.REASON, pa.nulls(table.num_rows, pa.string()))


def _extractor(config: IngestConfig) -> SegmentFeatureExtractor:
    return build_extractor(config.feature, width=config.decode_width, height=config.decode_height,
                           model=config.clip_model)


def part_name(video_ids: list[str]) -> str:
    """The part file of a group of videos, named after them (a hash of their sorted ids): a task that Ray
    runs again after its worker died writes the same name, replacing rather than adding a copy."""
    digest = hashlib.sha256("\n".join(sorted(video_ids)).encode()).hexdigest()[:16]
    return f"part-{digest}.parquet"


def write_videos(batch: pa.Table, extractor: SegmentFeatureExtractor | None, config: IngestConfig,
                 out_uri: str) -> pa.Table:
    """batch: input rows of a group of videos -> their summary rows (:data:`SUMMARY_SCHEMA`), after
    writing their segment rows as one part :func:`part_name` into ``out_uri`` (atomically: a reader
    never sees half a part). A group whose videos all fail writes nothing."""
    table = segment_videos(batch, extractor, config)
    failed = pc.is_valid(table[S.REASON])
    segments = table.filter(pc.invert(failed)).drop_columns([S.REASON]).cast(S.SEGMENTS_SCHEMA)
    part = part_name(batch.column(S.VIDEO_ID).to_pylist()) if segments.num_rows else None
    if part is not None:
        open_run(out_uri).write_table(segments, part)
    counts = segments.group_by(S.VIDEO_ID).aggregate([([], "count_all")]).to_pydict()
    rows = dict(zip(counts[S.VIDEO_ID], counts["count_all"], strict=True))
    reasons = dict(zip(*table.filter(failed).select([S.VIDEO_ID, S.REASON]).to_pydict().values(),
                       strict=True))
    ids, video_paths = batch.column(S.VIDEO_ID).to_pylist(), batch.column(S.VIDEO_PATH).to_pylist()
    return pa.table({S.VIDEO_ID: ids, S.VIDEO_PATH: video_paths, S.REASON: [reasons.get(v) for v in ids],
                     ROWS: [rows.get(v, 0) for v in ids], PART: [part if v in rows else None for v in ids]},
                    schema=SUMMARY_SCHEMA)


class SegmentWorker:
    """Ray Data actor for extractors with a model (``clip``): loads it once, then segments and writes
    groups of videos (:func:`write_videos`)."""

    def __init__(self, config: IngestConfig, out_uri: str) -> None:
        self.config, self.out_uri, self.extractor = config, out_uri, _extractor(config)

    def __call__(self, batch: pa.Table) -> pa.Table:
        return write_videos(batch, self.extractor, self.config, self.out_uri)


def segment_videos_task(batch: pa.Table, config: IngestConfig, out_uri: str) -> pa.Table:
    """Ray Data task for weightless extractors (``motion``) and feature files (no extractor): building one
    costs nothing, and tasks run in Ray's pooled worker processes instead of starting actors for every stage
    run."""
    return write_videos(batch, None if config.features else _extractor(config), config, out_uri)


STAGE = stage_named("ingest")


def run_ingest(config: DualVADConfig, force: bool = False) -> IngestSummary | Skipped:
    """Ingest ``config.corpus`` into ``RUN/segments`` (see module docstring) through the stage runner.

    Raises:
        IngestError: the corpus lists no videos.
        FailureShareError: more than ``stages.max_failure_share`` of the corpus failed to decode (the
            decoded videos stay staged; a re-run decodes only the rest).
    """
    records = read_corpus(config.corpus, config.ingest.categories, videos_required=not config.ingest.features)
    if not records:
        raise IngestError(f"corpus {config.corpus} lists no videos in annotations/")
    if not any(record.is_labelled for record in records):
        log.info("ingest: %s has no annotations/: its %d videos are unlabelled (split test); train-scorer, "
                 "build-benchmarks and evaluate need labels, `dualvad score score.scorer_run=OTHER_RUN` "
                 "scores them with a scorer trained elsewhere", config.corpus, len(records))
    # categories only check the labels, which the corpus identity holds: they do not change the segments
    # without feature files their keys change nothing: left out, so that earlier runs keep their fingerprint
    unused = () if config.ingest.features else IngestConfig.FEATURE_FILE_KEYS
    settings = section(config.ingest, "workers", "cpus_per_worker", "decode_threads", "categories", *unused)
    external = {"corpus": corpus_identity(records)}
    files: dict[str, VideoFeatureFiles] = {}
    failures: list[dict[str, Any]] = []
    if config.ingest.features:
        files, failures, external["features"] = scan_corpus(records, config.ingest)
    return run_stage(STAGE, open_run(config.run), settings,
                     lambda context: _ingest(context, records, config, files, failures),
                     config.stages, force, external=external, effective=config)


def corpus_identity(records: list[VideoRecord]) -> str:
    """A hash of what ingest reads from the corpus: every video's id, label, split, annotation and file size
    (not its folder: a corpus may move between machines)."""
    digest = hashlib.sha256()
    sizes = _file_sizes([record.path for record in records])
    for record in sorted(records, key=lambda r: r.video_id):
        size = sizes[record.path]
        entry = [record.video_id, record.label, record.split, record.intervals, size]
        if record.annotated_frames is not None:  # only then: corpora without it keep their identity
            entry.append(record.annotated_frames)
        digest.update(json.dumps(entry).encode())
    return digest.hexdigest()[:16]


def _file_sizes(files: list[str]) -> dict[str, int]:
    """Bytes of each local path or pyarrow URI (``-1``: no such file); the URIs are on one filesystem (the
    corpus's), asked in one ``get_file_info`` call."""
    sizes = {path: os.path.getsize(path) if os.path.exists(path) else -1
             for path in files if "://" not in path}
    remote = [path for path in files if "://" in path]
    if remote:
        resolved = [resolve(path) for path in remote]
        fs = resolved[0][0]
        for path, info in zip(remote, fs.get_file_info([inner for _, inner in resolved]), strict=True):
            sizes[path] = info.size if info.type == pafs.FileType.File else -1
    return sizes


def _ingest(context: StageContext, records: list[VideoRecord], config: DualVADConfig,
            files: dict[str, VideoFeatureFiles], failures: list[dict[str, Any]]) -> IngestSummary:
    """``files``, ``failures``: from feature files, the usable videos' files and the others' failures."""
    started = time.perf_counter()
    staged = context.out.parquet_files()  # listed once: the videos skipped and the parts kept agree
    done = context.staged_video_ids(staged)
    context.record_failures(failures)
    failed = {row[S.VIDEO_ID] for row in failures}
    todo = [r for r in records if r.video_id not in done and r.video_id not in failed]
    log.info("ingest: %d videos, %d already ingested, %d to do", len(records), len(done), len(todo))
    context.videos = len(records)
    segments = 0
    if todo:
        ensure_ray(config.ray)
        segments = _ingest_videos(context, todo, config.ingest, staged, files)
    processed = len(todo) + len(failed)
    return IngestSummary(len(records), len(records) - processed, processed, segments, len(context.failures),
                         time.perf_counter() - started, context.run.path(paths.SEGMENTS),
                         sum(not record.is_labelled for record in records))


def _ingest_videos(context: StageContext, todo: list[VideoRecord], config: IngestConfig,
                   staged: list[str], files: dict[str, VideoFeatureFiles]) -> int:
    """Run the Ray Data pipeline over ``todo``; returns the segment rows written. Failures go to
    ``context``; ``staged``: the parts of an interrupted earlier run, kept.

    The videos go in groups of :func:`videos_per_part`, one Ray Data block each; each task writes its
    group's part (:func:`write_videos`) and the driver only counts. A part is written once its group is
    done, so SIGTERM loses at most the groups in progress; a re-run skips what was written.
    """
    size = videos_per_part(len(todo), context.settings.flush_videos, _slots(config))
    rows = video_rows(todo)
    if config.features:
        for name, column in feature_columns(todo, files).items():
            rows = rows.append_column(name, column)
    groups = [rows.slice(start, size) for start in range(0, rows.num_rows, size)]
    if config.feature == "motion" or config.features:
        udf = {"fn": segment_videos_task, "fn_kwargs": {"config": config, "out_uri": context.out.uri},
               # at most `workers` tasks at once (map_batches' concurrency= is deprecated in Ray 2.60)
               "compute": ray.data.TaskPoolStrategy(size=min(config.workers, len(groups)) if config.workers
                                                    else None)}
    else:
        udf = {"fn": SegmentWorker, "fn_constructor_kwargs": {"config": config, "out_uri": context.out.uri},
               "compute": actor_pool(config.workers, len(groups))}
    dataset = ray.data.from_arrow(groups).map_batches(
        **udf, batch_size=size, batch_format="pyarrow", num_cpus=config.cpus_per_worker,
    )
    done: set[str] = set()
    written, segments = set(staged), 0
    with console.bar("ingest", len(todo), "videos") as advance:
        for batch in dataset.iter_batches(batch_format="pyarrow", batch_size=None):
            failed = pc.is_valid(batch[S.REASON])
            context.record_failures(batch.filter(failed).select(S.FAILURES_SCHEMA.names).to_pylist())
            segments += pc.sum(batch[ROWS]).as_py() or 0
            written.update(context.out.path(part) for part in pc.unique(batch[PART].drop_null()).to_pylist())
            advance(_log_progress(done, batch, len(todo), len(context.failures)))
    drop_strays(context.out, written)
    return segments


def videos_per_part(videos: int, most: int, slots: int) -> int:
    """Videos per group (task and part): ``most`` (``stages.flush_videos``), fewer when ``videos`` would
    otherwise make fewer than :data:`TASKS_PER_WORKER` groups per slot (concurrent task) of the cluster."""
    return max(1, min(most, -(-videos // (slots * TASKS_PER_WORKER))))


def _slots(config: IngestConfig) -> int:
    """Tasks that run at once: ``workers``, or by default as many as the cluster's CPUs hold."""
    if config.workers:
        return config.workers
    return max(1, int(ray.cluster_resources().get("CPU", 1) / config.cpus_per_worker))


def drop_strays(out: RunDir, written: set[str]) -> None:
    """Delete the parts in ``out`` that neither the earlier run left (listed at the start) nor a task of
    this run reported: written by an attempt whose result never came back, e.g. a worker of an
    interrupted run that finished its group after that run's driver was gone. Their videos were all
    decoded again and reported by this run, so nothing is lost and no video is published twice."""
    for path in out.parquet_files():
        if path not in written:
            log.warning("ingest: deleting %s, a part no task of this run reported (its videos were "
                        "written again)", path)
            out.fs.delete_file(path)


def _log_progress(done: set[str], batch: pa.Table, total: int, failed: int) -> int:
    """Log every ~5% of the videos (Ray Data's progress bar counts blocks, this counts videos); returns
    how many videos ``batch`` finished."""
    before = len(done)
    done.update(batch.column(S.VIDEO_ID).unique().to_pylist())
    step = max(1, total // 20)
    if len(done) // step > before // step or len(done) == total:
        log.info("ingest: %d/%d videos decoded, %d failed", len(done), total, failed)
    return len(done) - before


def video_rows(records: list[VideoRecord]) -> pa.Table:
    """The pipeline's input: one row per video; its annotation as a flat ``[s1, e1, s2, e2 ...]`` list
    (null when the video has none)."""
    return pa.table({S.VIDEO_ID: [r.video_id for r in records], S.VIDEO_PATH: [r.path for r in records],
                     S.LABEL: [r.label for r in records], S.SPLIT: [r.split for r in records],
                     S.GT_INTERVALS: pa.array([_flatten(r.intervals) for r in records],
                                              pa.list_(pa.int64())),
                     S.ANNOTATED_FRAMES: pa.array([r.annotated_frames for r in records], pa.int64())})


def _record_from_row(row: dict[str, Any]) -> VideoRecord:
    flat = row[S.GT_INTERVALS]
    intervals = None if flat is None else tuple(zip(flat[::2], flat[1::2], strict=True))
    return VideoRecord(row[S.VIDEO_ID], row[S.VIDEO_PATH], row[S.LABEL], row[S.SPLIT], intervals,
                       row.get(S.ANNOTATED_FRAMES))
