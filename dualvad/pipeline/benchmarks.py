"""The benchmark stage: sampled frames -> the image and the video benchmark, sharded.

A Ray Data pipeline over shards: the videos of ``RUN/samples`` (sorted by id) are dealt into
S contiguous shards; one task per shard re-decodes only the selected frames with decord,
encodes them as JPEG and writes ``RUN/benchmarks/image/shard-i-of-S.parquet`` and the video
twin, streaming one row group per video (memory: one video's frames). The driver then writes
``manifest.json`` (rows, label balance per benchmark and category, seed, config hash).
Deterministic: the same inputs and config give byte-identical shards.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import ray

from dualvad import schema as S
from dualvad.benchmarks.builder import (
    SampledVideo,
    decode_selected,
    encode_jpeg,
    frame_labels,
    image_rows,
    video_rows,
)
from dualvad.config import BenchmarksConfig, DualVADConfig, config_hash
from dualvad.errors import MissingInputError
from dualvad.pipeline.runtime import ensure_ray
from dualvad.rundir import TEMP_PREFIX, RunDir, open_run

STAGE = "benchmarks"
MANIFEST = "manifest.json"
KINDS = {"image": S.IMAGE_BENCH_SCHEMA, "video": S.VIDEO_BENCH_SCHEMA}


@dataclass(frozen=True)
class BenchmarkSummary:
    image_rows: int
    video_rows: int
    shards: int
    skipped: bool
    seconds: float
    output: str

    def __str__(self) -> str:
        done = "already built with these settings" if self.skipped else f"{self.seconds:.1f} s"
        return (f"build-benchmarks: {self.image_rows} image rows, {self.video_rows} video clips in "
                f"{self.shards} shards each ({done}) -> {self.output}")


def shard_name(index: int, count: int) -> str:
    return f"shard-{index:05d}-of-{count:05d}.parquet"


def run_build_benchmarks(config: DualVADConfig) -> BenchmarkSummary:
    """Build both benchmarks from ``RUN/samples``; see the module docstring."""
    started = time.perf_counter()
    run, settings = open_run(config.run), config.benchmarks
    samples = run.read_table("samples")
    if samples is None:
        raise MissingInputError(f"{run.path('samples')} holds no samples: run `dualvad sample` first")
    samples = samples.sort_by(S.VIDEO_ID)
    fingerprint = _fingerprint(samples, settings)
    done = _existing_manifest(run)
    if done is not None and done.get("fingerprint") == fingerprint:
        return BenchmarkSummary(done["image"]["rows"], done["video"]["rows"], settings.shards, True, 0.0,
                                run.path(STAGE))
    for kind in KINDS:  # shards of an earlier build (maybe another shard count) are stale
        for path in run.parquet_files(STAGE, kind):
            run.fs.delete_file(path)
    ensure_ray(config.ray)
    stats = _build_shards(run, samples.to_pylist(), settings)
    manifest = _manifest(stats, settings, fingerprint, config)
    run.write_text(json.dumps(manifest, indent=2, sort_keys=True), STAGE, MANIFEST)
    return BenchmarkSummary(manifest["image"]["rows"], manifest["video"]["rows"], settings.shards, False,
                            time.perf_counter() - started, run.path(STAGE))


def _fingerprint(samples: pa.Table, settings: BenchmarksConfig) -> str:
    """Hash of the inputs and settings (the shards are a function of these alone)."""
    digest = hashlib.sha256(json.dumps(asdict(settings), sort_keys=True).encode())
    light = samples.drop_columns([S.VIDEO_PATH])  # the same corpus may move between machines
    for batch in light.to_batches():
        for column in batch.columns:
            for buffer in column.buffers():
                if buffer is not None:
                    digest.update(buffer)
    return digest.hexdigest()[:16]


def _existing_manifest(run: RunDir) -> dict | None:
    if not run.exists(STAGE, MANIFEST):
        return None
    with run.fs.open_input_stream(run.path(STAGE, MANIFEST)) as stream:
        return json.loads(stream.read())


def _build_shards(run: RunDir, rows: list[dict], settings: BenchmarksConfig) -> list[dict]:
    """One Ray task per shard; returns each shard's label statistics."""
    count = max(1, min(settings.shards, len(rows)))
    shards = [{"shard": i, "count": count,
               "videos": json.dumps(rows[len(rows) * i // count : len(rows) * (i + 1) // count])}
              for i in range(count)]
    dataset = ray.data.from_items(shards, override_num_blocks=count).map_batches(
        _build_shard_batch, fn_kwargs={"run_uri": run.uri, "settings": asdict(settings)},
        batch_size=1, batch_format="pyarrow", num_cpus=1,
    )
    return [json.loads(row["stats"]) for row in dataset.take_all()]


def _build_shard_batch(batch: pa.Table, run_uri: str, settings: dict[str, Any]) -> pa.Table:
    """Ray task: build the shards of the descriptors in ``batch``; returns their statistics."""
    run, config = open_run(run_uri), BenchmarksConfig(**settings)
    stats = [_build_shard(run, row["shard"], row["count"], json.loads(row["videos"]), config)
             for row in batch.to_pylist()]
    return pa.table({"stats": [json.dumps(s) for s in stats]})


def _build_shard(run: RunDir, index: int, count: int, videos: list[dict], config: BenchmarksConfig) -> dict:
    """Write image and video shard ``index``: one row group per video, then rename into place."""
    temps = {kind: run.path(STAGE, kind, f"{TEMP_PREFIX}{shard_name(index, count)}") for kind in KINDS}
    for kind in KINDS:
        run.makedirs(STAGE, kind)
    writers = {kind: pq.ParquetWriter(temps[kind], schema, filesystem=run.fs)
               for kind, schema in KINDS.items()}
    stats = {kind: Counter() for kind in KINDS}
    for row in videos:
        video = SampledVideo.from_row(row)
        labels, pseudo = frame_labels(video, config.pseudo_threshold)
        frames = decode_selected(video, config.image_size, config.decode_threads)
        jpegs = [encode_jpeg(frame, config.jpeg_quality) for frame in frames]
        built = {"image": image_rows(video, jpegs, labels, pseudo, config.seed),
                 "video": video_rows(video, jpegs, labels, pseudo, config.clip_frames, config.seed)}
        for kind, kind_rows in built.items():
            writers[kind].write_table(pa.Table.from_pylist(kind_rows, schema=KINDS[kind]))
            stats[kind].update(_row_stats(kind, kind_rows))
    for kind, writer in writers.items():
        writer.close()
        run.fs.move(temps[kind], run.path(STAGE, kind, shard_name(index, count)))
    return {kind: dict(counter) for kind, counter in stats.items()}


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


def _manifest(stats: list[dict], settings: BenchmarksConfig, fingerprint: str,
              config: DualVADConfig) -> dict:
    manifest: dict[str, Any] = {"seed": settings.seed, "config_hash": config_hash(config),
                                "fingerprint": fingerprint, "shards": len(stats)}
    for kind in KINDS:
        total = Counter()
        for shard in stats:
            total.update(shard[kind])
        rows = total.get("rows", 0)
        manifest[kind] = {
            "rows": rows, "anomalous": total.get("anomalous", 0),
            "anomalous_share": round(total.get("anomalous", 0) / rows, 4) if rows else 0.0,
            "pseudo_labelled": total.get("pseudo", 0),
            "splits": {k.split(":", 1)[1]: v for k, v in sorted(total.items()) if k.startswith("split:")},
            "categories": {k.split(":", 1)[1]: v for k, v in sorted(total.items())
                           if k.startswith("category:")},
            "files": [f"{kind}/{shard_name(i, len(stats))}" for i in range(len(stats))],
        }
    return manifest
