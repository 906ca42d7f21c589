"""The fine-tuning rows as one Ray Data stream per Ray Train worker.

The mix of the two benchmarks is an explicit list of draws per rank, built by the driver, so the order is
the one :func:`dualvad.vlm.mixing.mix_schedule` defines and nothing depends on how Ray Data splits work:

1. :func:`stage_rows`: the driver puts each benchmark's train rows into the object store, in file order,
   as Arrow tables of :data:`PIECE_ROWS` rows (``id``, ``conversations``, ``image``, ``images``: the columns
   :func:`dualvad.vlm.collate.encode_example` reads). Row ``i`` of a benchmark belongs to rank
   ``i % workers`` (its local index ``i // workers``), so every row is used and shards differ by one row.
2. :func:`rank_draws`: rank ``r``'s draws are ``mix_schedule`` over its own row counts with seed
   ``seed + r``, repeated over as many epochs as ``total_steps * grad_accum * micro_batch`` draws need:
   every rank runs the same number of steps whatever its shard size.
3. :func:`rank_datasets`: one dataset per rank (``rank0``, ``rank1`` ..., not split by Ray Train, see
   :func:`data_config`), whose rows are that rank's draws ``(draw, benchmark, row)`` in order; a
   ``map_batches`` operator (:func:`gather`, zero-CPU tasks: no CPU is taken from the training workers, so
   a 2-CPU cluster with two 0.5-CPU workers cannot deadlock) fetches each draw's row from the staged
   pieces. ``preserve_order`` keeps the draws in schedule order through Ray Data.
4. The worker (:func:`micro_batches`) iterates its dataset with ``iter_torch_batches(batch_size=micro_batch,
   collate_fn=EncodeCollate, prefetch_batches=...)``: JPEG decoding, image processing and tokenization run
   in Ray Data's format threads, batches ahead of the optimizer step, and the worker holds only the
   prefetched batches, whatever the benchmark's size. A resumed worker starts at draw
   ``step * grad_accum * micro_batch``: the collate returns the batches before it without decoding them,
   and the loop checks every batch's first draw, so a reordering fails loudly instead of changing the run.

The ``memory`` path (:data:`DataPath`, bench/finetune.py's comparison; not a config key: a user's run always
streams): the rank's dataset holds its rows instead of its draws; the worker loads them all as Python dicts,
computes the same draws, and decodes each micro-batch inside the step. Both paths feed the same batches in
the same order (tested).
"""

from __future__ import annotations

import copy
import math
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray
import torch
from ray.data.collate_fn import ArrowBatchCollateFn
from ray.train import DataConfig

from dualvad import schema as S
from dualvad.vlm.collate import collate, encode_example
from dualvad.vlm.finetune_config import FinetuneConfig
from dualvad.vlm.mixing import IMAGE, VIDEO, draws_per_epoch, mix_schedule

KINDS = (IMAGE, VIDEO)
#: How rows reach the workers: "stream" (Ray Data, decoded ahead of the step; the stage's) or "memory" (each
#: worker loads its whole shard and decodes in the step; bench/finetune.py measures it against the stream).
DataPath = Literal["stream", "memory"]
IMAGE_COLUMN = {IMAGE: "image", VIDEO: "images"}  # where each benchmark keeps its JPEG(s)
#: The staged rows: the columns encode_example reads; the other benchmark's image column is null.
ROW_SCHEMA = pa.schema([(S.ROW_ID, pa.string()), (S.CONVERSATIONS, pa.list_(S.TURN)),
                        ("image", pa.binary()), ("images", pa.list_(pa.binary()))])
DRAW = "draw"  # position in the rank's schedule (int64)
BENCHMARK = "benchmark"  # "image" or "video"
ROW = "row"  # the row's index in its benchmark's staged order (int64)
PIECE_ROWS = 16  # rows per staged object: a gather fetches whole pieces, so small keeps transfers small
DRAW_BLOCK_ROWS = 32  # draws per block of a rank's dataset (one gather task each)
GATHER_TASKS = 2  # concurrent gather tasks per rank's dataset


def shard_name(rank: int) -> str:
    """The name of rank ``rank``'s dataset in the trainer's ``datasets``."""
    return f"rank{rank}"


# ------------------------------------------------------------------------------------------------ driver


@dataclass(frozen=True)
class RowStore:
    """One benchmark's train rows in the object store: Arrow tables of ``ROW_SCHEMA``, in order."""

    pieces: tuple[ray.ObjectRef, ...]
    starts: tuple[int, ...]  # index of each piece's first row
    rows: int

    def take(self, rows: np.ndarray) -> pa.Table:
        """The rows with these indices (int64, any order, repeats allowed), in that order."""
        starts = np.asarray(self.starts, dtype=np.int64)
        piece = np.searchsorted(starts, rows, side="right") - 1
        needed = np.unique(piece)
        tables = ray.get([self.pieces[int(index)] for index in needed])
        offsets = np.cumsum([0] + [table.num_rows for table in tables])[:-1]
        local = rows - starts[piece] + offsets[np.searchsorted(needed, piece)]
        # take copies the chosen rows: the output block does not pin the pieces.
        return pa.concat_tables(tables).take(pa.array(local, type=pa.int64()))


def stage_rows(dataset: ray.data.Dataset, kind: str) -> RowStore:
    """Put ``dataset``'s rows (a benchmark's schema) into the object store in pieces of ``PIECE_ROWS``.

    The order is the dataset's (``preserve_order``: the files' order), so a seed gives the same run."""
    column = IMAGE_COLUMN[kind]
    options = copy.deepcopy(dataset.context.execution_options)
    options.preserve_order = True
    dataset = dataset.select_columns([S.ROW_ID, S.CONVERSATIONS, column])
    dataset.context.execution_options = options  # this dataset's own context copy
    pieces, starts, rows = [], [], 0
    for batch in dataset.iter_batches(batch_size=PIECE_ROWS, batch_format="pyarrow"):
        pieces.append(ray.put(_unified(batch)))
        starts.append(rows)
        rows += batch.num_rows
    return RowStore(tuple(pieces), tuple(starts), rows)


def _unified(batch: pa.Table) -> pa.Table:
    """A benchmark batch in ``ROW_SCHEMA``: its image column kept, the other one null."""
    columns = [batch[field.name] if field.name in batch.column_names else pa.nulls(batch.num_rows, field.type)
               for field in ROW_SCHEMA]
    return pa.Table.from_arrays(columns, names=ROW_SCHEMA.names).cast(ROW_SCHEMA)


def rank_rows(rows: int, rank: int, world: int) -> int:
    """How many of a benchmark's ``rows`` rank ``rank`` holds (rows ``rank, rank + world, ...``)."""
    return len(range(rank, rows, world))


def rank_draws(n_image: int, n_video: int, settings: FinetuneConfig, rank: int, steps: int
               ) -> list[tuple[str, int]]:
    """Rank ``rank``'s ``steps * grad_accum * micro_batch`` draws ``(benchmark, local row index)``.

    :func:`mix_schedule` over the rank's rows (seed ``seed + rank``), over as many epochs as needed.
    Raises ``ValueError`` (from ``mix_schedule``) when the rank has nothing to draw from.
    """
    needed = steps * settings.grad_accum * settings.micro_batch
    per_epoch = (draws_per_epoch(n_image, settings.image_weight)
                 + draws_per_epoch(n_video, settings.video_weight))
    epochs = max(1, math.ceil(needed / per_epoch)) if per_epoch else 1
    schedule = mix_schedule(n_image, n_video, settings.image_weight, settings.video_weight,
                            settings.curriculum, epochs, settings.seed + rank)
    return schedule[:needed]


def rank_datasets(stores: dict[str, RowStore], settings: FinetuneConfig, steps: int,
                  path: DataPath = "stream") -> dict[str, ray.data.Dataset]:
    """One dataset per rank (:func:`shard_name`): its draws (``stream``) or its rows (``memory``), each
    row gathered from ``stores``. Raises ``ValueError`` when a rank has no rows to draw from, or ``path`` is
    not a :data:`DataPath`."""
    if path not in get_args(DataPath):
        raise ValueError(f"the data path must be one of {get_args(DataPath)}, got {path!r}")
    world, datasets = settings.workers, {}
    for rank in range(world):
        counts = {kind: rank_rows(stores[kind].rows, rank, world) for kind in KINDS}
        draws = rank_draws(counts[IMAGE], counts[VIDEO], settings, rank, steps)  # checked in both modes
        if path == "memory":
            draws = [(kind, index) for kind in KINDS for index in range(counts[kind])]
        datasets[shard_name(rank)] = _gathered(draws, rank, world, stores)
    return datasets


def _gathered(draws: Sequence[tuple[str, int]], rank: int, world: int, stores: dict[str, RowStore]
              ) -> ray.data.Dataset:
    """A dataset of ``draws`` (``draw``, ``benchmark``, global ``row``) with each draw's row joined on."""
    table = pa.table({DRAW: pa.array(range(len(draws)), type=pa.int64()),
                      BENCHMARK: pa.array([kind for kind, _ in draws], type=pa.string()),
                      ROW: pa.array([index * world + rank for _, index in draws], type=pa.int64())})
    blocks = [table.slice(start, DRAW_BLOCK_ROWS) for start in range(0, len(draws), DRAW_BLOCK_ROWS)]
    return ray.data.from_arrow(blocks).map_batches(
        gather, fn_kwargs={"stores": stores}, batch_size=None, batch_format="pyarrow",
        # Zero CPUs: the gather copies bytes, and must not wait for a CPU the training workers hold.
        num_cpus=0, compute=ray.data.TaskPoolStrategy(size=GATHER_TASKS))


def gather(draws: pa.Table, stores: dict[str, RowStore]) -> pa.Table:
    """``draws`` (``draw``, ``benchmark``, ``row``) with their rows' ``ROW_SCHEMA`` columns, in draw order."""
    parts = []
    for kind, store in stores.items():
        chosen = draws.filter(pc.equal(draws[BENCHMARK], kind))
        if chosen.num_rows:
            rows = store.take(chosen[ROW].to_numpy())
            parts.append(pa.Table.from_arrays([*chosen.columns, *rows.columns],
                                              names=[*chosen.column_names, *rows.column_names]))
    joined = pa.concat_tables(parts)
    return joined.take(pc.sort_indices(joined[DRAW]))


def data_config(names: Sequence[str]) -> DataConfig:
    """Ray Train's data config for :func:`rank_datasets`: each rank reads its own dataset whole (no split),
    in order."""
    options = copy.deepcopy(DataConfig.default_ingest_options())
    options.preserve_order = True
    return DataConfig(datasets_to_split=[], execution_options=dict.fromkeys(names, options))


# ------------------------------------------------------------------------------------------------ worker


@dataclass(frozen=True)
class Encoder:
    """Benchmark rows to one training batch: ``input_ids``/``attention_mask``/``labels`` int64 (B, seq),
    ``pixel_values`` float32 (tiles, 3, S, S) (:func:`encode_example` then :func:`collate`)."""

    processor: Any
    max_length: int
    pad_id: int

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        return collate([encode_example(row, self.processor, self.max_length) for row in rows], self.pad_id)


class EncodeCollate(ArrowBatchCollateFn):
    """``iter_torch_batches``' collate: a micro-batch of gathered draws to the :class:`Encoder`'s tensors,
    plus ``draw`` (int64 scalar: the batch's first draw). Batches before draw ``start`` come back as
    ``{"draw": ...}`` alone, not decoded (a resumed worker skips them)."""

    def __init__(self, encoder: Encoder, start: int) -> None:
        self.encoder, self.start = encoder, start
        # Ray Data calls the collate from several threads; the tokenizer is not meant to be shared across
        # concurrent calls, so one batch at a time (still off the training thread).
        self._lock = threading.Lock()

    def __call__(self, batch: pa.Table) -> dict[str, torch.Tensor]:
        draws = batch[DRAW].to_numpy()
        if not np.array_equal(draws, np.arange(draws[0], draws[0] + len(draws))):
            raise RuntimeError(f"a micro-batch of non-consecutive draws {draws.tolist()}: Ray Data reordered "
                               "the stream (is preserve_order off?)")
        first = torch.tensor(int(draws[0]))
        if draws[0] < self.start:
            return {DRAW: first}
        rows = batch.to_pylist()
        with self._lock:
            encoded = self.encoder(rows)
        return {**encoded, DRAW: first}


def micro_batches(shard: Any, settings: FinetuneConfig, rank: int, steps: int, start: int, encoder: Encoder,
                  path: DataPath = "stream") -> Iterator[dict[str, torch.Tensor]]:
    """This rank's micro-batches from micro-batch ``start`` on (``start = step * grad_accum`` on resume), as
    :class:`Encoder` batches on the CPU or on the training device. ``shard``: the rank's ``DataIterator``
    from :func:`rank_datasets` with the same ``path``."""
    if path == "memory":
        return _memory_batches(load_rows(shard), settings, rank, steps, start, encoder)
    return _streamed_batches(shard, settings, start, encoder)


def _streamed_batches(shard: Any, settings: FinetuneConfig, start: int, encoder: Encoder
                      ) -> Iterator[dict[str, torch.Tensor]]:
    size = settings.micro_batch
    collate_fn = EncodeCollate(encoder, start * size)
    # A whole optimizer step decoded ahead (at least two batches, so one is always ready).
    batches = shard.iter_torch_batches(batch_size=size, collate_fn=collate_fn,
                                       prefetch_batches=max(2, settings.grad_accum))
    expected = start * size
    for batch in batches:
        first = int(batch.pop(DRAW))
        if first < start * size:
            continue
        if first != expected:
            raise RuntimeError(f"expected the micro-batch starting at draw {expected}, got draw {first}")
        expected += size
        yield batch


def load_rows(shard: Any) -> dict[str, list[dict]]:
    """``memory``: every row of the rank's dataset as Python dicts, per benchmark in local index order."""
    rows = [row for batch in shard.iter_batches(batch_size=256, batch_format="pyarrow")
            for row in batch.to_pylist()]
    rows.sort(key=lambda row: row[DRAW])
    return {kind: [row for row in rows if row[BENCHMARK] == kind] for kind in KINDS}


def _memory_batches(rows: dict[str, list[dict]], settings: FinetuneConfig, rank: int, steps: int, start: int,
                    encoder: Encoder) -> Iterator[dict[str, torch.Tensor]]:
    """``memory``: the same draws as the stream, each micro-batch decoded when the step asks for it."""
    draws = rank_draws(len(rows[IMAGE]), len(rows[VIDEO]), settings, rank, steps)
    size = settings.micro_batch
    for first in range(start * size, len(draws), size):
        yield encoder([rows[kind][index] for kind, index in draws[first:first + size]])
