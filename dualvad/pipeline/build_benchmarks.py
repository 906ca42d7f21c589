"""The benchmark stage: sampled frames -> the image and the video benchmark, sharded.

A Ray Data pipeline over shards: the videos of ``RUN/samples`` (sorted by id) are dealt into
S contiguous shards, one Arrow block each; one task per shard re-decodes only the selected frames
with decord, encodes them as JPEG and writes ``RUN/benchmarks/image/shard-i-of-S.parquet`` and the
video twin, streaming one row group per video (memory: one video's frames). A video that cannot be
decoded is a recorded failure (kept in the image shard's metadata until the stage finishes). The
driver then writes ``manifest.json`` (rows, label balance per benchmark and category, seed), counted
from the shards themselves. Deterministic: the same inputs and config give byte-identical shards; an
interrupted build keeps its finished shards and a re-run builds the rest.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray

from dualvad import console, paths
from dualvad import schema as S
from dualvad.benchmarks.builder import (
    SampledVideo,
    decode_selected,
    frame_labels,
    image_rows,
    video_rows,
)
from dualvad.config import BenchmarksConfig, DualVADConfig
from dualvad.corpus.layout import UNLABELLED
from dualvad.errors import MissingInputError, StageError
from dualvad.pipeline.runtime import ensure_ray
from dualvad.rundir import TEMP_PREFIX, RunDir, open_run
from dualvad.stages.records import read_input
from dualvad.stages.registry import stage_named
from dualvad.stages.runner import Skipped, StageContext, run_stage
from dualvad.stages.settings import section
from dualvad.video.decode import VideoDecodeError
from dualvad.video.jpeg import encode_jpeg

STAGE = stage_named("build-benchmarks")
KINDS = {"image": S.IMAGE_BENCH_SCHEMA, "video": S.VIDEO_BENCH_SCHEMA}
SHARD = "shard"  # input column: the shard a video goes to
FAILURES_KEY = b"failures"  # image shard metadata: JSON list of the shard's failure rows

log = logging.getLogger(__name__)


class BenchmarkError(StageError):
    """The samples hold no video the benchmarks can be built from."""


@dataclass(frozen=True)
class BenchmarkSummary:
    image_rows: int
    video_rows: int
    shards: int
    failures: int
    seconds: float
    output: str

    def __str__(self) -> str:
        return (f"build-benchmarks: {self.image_rows} image rows, {self.video_rows} video clips in "
                f"{self.shards} shards each, {self.failures} failures, {self.seconds:.1f} s -> {self.output}")


def shard_name(index: int, count: int) -> str:
    return f"shard-{index:05d}-of-{count:05d}.parquet"


def run_build_benchmarks(config: DualVADConfig, force: bool = False) -> BenchmarkSummary | Skipped:
    """Build both benchmarks from ``RUN/samples``; see the module docstring."""
    settings = section(config.benchmarks, "decode_threads")
    return run_stage(STAGE, open_run(config.run), settings, lambda context: _build(context, config),
                     config.stages, force, effective=config)


def _build(context: StageContext, config: DualVADConfig) -> BenchmarkSummary:
    started, settings = time.perf_counter(), config.benchmarks
    samples = read_input(context.run, paths.SAMPLES, unique=(S.VIDEO_ID,))
    if samples is None:
        raise MissingInputError(f"{context.run.path(paths.SAMPLES)} holds no samples: "
                                "run `dualvad sample` first")
    samples = _labelled(samples.sort_by(S.VIDEO_ID), context.run)
    context.videos = samples.num_rows
    count = max(1, min(settings.shards, samples.num_rows))
    todo = [i for i in range(count) if not context.out.exists("image", shard_name(i, count))
            or not context.out.exists("video", shard_name(i, count))]
    if todo:
        ensure_ray(config.ray)
        _build_shards(context.out, _shard_tables(samples, count, todo), count, settings)
    manifest = _manifest(context.out, count, settings)
    context.record_failures(_shard_failures(context.out, count))
    context.out.write_text(json.dumps(manifest, indent=2, sort_keys=True), paths.MANIFEST_FILE)
    return BenchmarkSummary(manifest["image"]["rows"], manifest["video"]["rows"], count,
                            len(context.failures),
                            time.perf_counter() - started, context.run.path(paths.BENCHMARKS))


def _labelled(samples: pa.Table, run: RunDir) -> pa.Table:
    """The sample rows of labelled videos: an unlabelled video has no answer for the benchmarks' questions.

    Raises:
        BenchmarkError: every sampled video is unlabelled.
    """
    unlabelled = pc.equal(samples[S.LABEL], UNLABELLED)
    left_out = pc.sum(unlabelled).as_py() or 0
    if left_out == samples.num_rows:
        raise BenchmarkError(
            f"the {left_out} videos of {run.path(paths.SAMPLES)} are all unlabelled (a corpus without "
            "annotations/): the benchmarks' questions need labelled videos. Label them in "
            "annotations/train.txt and test.txt and re-run `dualvad ingest`, or build the benchmarks in a "
            "run of a labelled corpus")
    if left_out:
        log.warning("build-benchmarks: %d unlabelled videos are left out", left_out)
    return samples.filter(pc.invert(unlabelled))


def _shard_tables(samples: pa.Table, count: int, shards: list[int]) -> list[pa.Table]:
    """The sample rows of each of ``shards`` (contiguous slices of the sorted videos), with their shard
    index in column ``shard``: one Ray Data block per shard."""
    total = samples.num_rows
    tables = []
    for index in shards:
        start, stop = total * index // count, total * (index + 1) // count
        part = samples.slice(start, stop - start)
        tables.append(part.append_column(SHARD, pa.array(np.full(part.num_rows, index, np.int32))))
    return tables


def _build_shards(out: RunDir, tables: list[pa.Table], count: int, settings: BenchmarksConfig) -> None:
    """One Ray task per shard; each writes its two files."""
    dataset = ray.data.from_arrow(tables).map_batches(
        _build_shard_batch, fn_kwargs={"out_uri": out.uri, "count": count, "settings": asdict(settings)},
        batch_size=None, batch_format="pyarrow", num_cpus=1,
    )
    with console.bar("build-benchmarks", len(tables), "shards") as advance:
        for built in dataset.iter_batches(batch_format="pyarrow", batch_size=None):
            advance(built.num_rows)  # one row per shard built


def _build_shard_batch(batch: pa.Table, out_uri: str, count: int, settings: dict[str, Any]) -> pa.Table:
    """Ray task: build every shard whose videos are in ``batch``; returns the shard indices built."""
    out, config = open_run(out_uri), BenchmarksConfig(**settings)
    built = []
    for index in pc.unique(batch[SHARD]).to_pylist():
        rows = batch.filter(pc.equal(batch[SHARD], index)).drop_columns([SHARD]).to_pylist()
        _build_shard(out, index, count, rows, config)
        built.append(index)
    return pa.table({SHARD: pa.array(built, pa.int32())})


def _build_shard(out: RunDir, index: int, count: int, videos: list[dict], config: BenchmarksConfig) -> None:
    """Write image and video shard ``index``: one row group per video, then rename into place (the video
    shard first: a shard counts as built once its image file exists)."""
    temps = {kind: out.path(kind, f"{TEMP_PREFIX}{shard_name(index, count)}") for kind in KINDS}
    for kind in KINDS:
        out.makedirs(kind)
    failures = []
    writers = {kind: pq.ParquetWriter(temps[kind], schema, filesystem=out.fs)
               for kind, schema in KINDS.items()}
    for row in videos:
        video = SampledVideo.from_row(row)
        labels, pseudo = frame_labels(video, config.pseudo_threshold)
        try:
            frames = decode_selected(video, config.image_size, config.decode_threads)
        except VideoDecodeError as error:  # recorded: the video is left out, the shard goes on
            failures.append({S.VIDEO_ID: video.video_id, S.VIDEO_PATH: video.path, S.REASON: str(error)})
            continue
        jpegs = [encode_jpeg(frame, config.jpeg_quality) for frame in frames]
        built = {"image": image_rows(video, jpegs, labels, pseudo, config.seed),
                 "video": video_rows(video, jpegs, labels, pseudo, config.clip_frames, config.seed)}
        for kind, kind_rows in built.items():
            writers[kind].write_table(pa.Table.from_pylist(kind_rows, schema=KINDS[kind]))
    metadata = {FAILURES_KEY: json.dumps(failures, sort_keys=True).encode()}
    for kind, writer in writers.items():
        if kind == "image":
            writer.add_key_value_metadata(metadata)
        writer.close()
    for kind in ("video", "image"):
        out.fs.move(temps[kind], out.path(kind, shard_name(index, count)))


def _shard_failures(out: RunDir, count: int) -> list[dict]:
    failures = []
    for index in range(count):
        metadata = pq.read_metadata(out.path("image", shard_name(index, count)), filesystem=out.fs).metadata
        failures += json.loads((metadata or {}).get(FAILURES_KEY, b"[]"))
    return failures


def _row_stats(kind: str, rows: list[dict]) -> Counter:
    """Counts for the manifest: rows, anomalous rows, per split, per category, pseudo-labelled."""
    counter = Counter()
    for row in rows:
        anomalous = row["anomalous"] if kind == "image" else row["abnormality_score"] > 0
        counter["rows"] += 1
        counter["anomalous"] += int(anomalous)
        counter[f"split:{row[S.SPLIT]}"] += 1
        counter[f"category:{row[S.CATEGORY] or 'Normal'}"] += 1
        counter["pseudo"] += int(row[S.PSEUDO])
    return counter


_STATS_COLUMNS = {"image": ["anomalous", S.SPLIT, S.CATEGORY, S.PSEUDO],
                  "video": ["abnormality_score", S.SPLIT, S.CATEGORY, S.PSEUDO]}


def _manifest(out: RunDir, count: int, settings: BenchmarksConfig) -> dict:
    """Counts per benchmark, read from the shards (label columns only, no images)."""
    manifest: dict[str, Any] = {"seed": settings.seed, "shards": count}
    for kind in KINDS:
        files = [f"{kind}/{shard_name(i, count)}" for i in range(count)]
        rows = pa.concat_tables([pq.read_table(out.path(f), filesystem=out.fs, columns=_STATS_COLUMNS[kind])
                                 for f in files]).to_pylist()
        total = _row_stats(kind, rows)
        manifest[kind] = {
            "rows": total.get("rows", 0), "anomalous": total.get("anomalous", 0),
            "anomalous_share": round(total.get("anomalous", 0) / len(rows), 4) if rows else 0.0,
            "pseudo_labelled": total.get("pseudo", 0),
            "splits": {k.split(":", 1)[1]: v for k, v in sorted(total.items()) if k.startswith("split:")},
            "categories": {k.split(":", 1)[1]: v for k, v in sorted(total.items())
                           if k.startswith("category:")},
            "files": files,
        }
    return manifest
