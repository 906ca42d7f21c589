"""The fine-tuning data path on the test session's Ray (2 CPUs): each rank's draws are the mix schedule of its
rows; the stream and the in-memory path give the same batches as encoding the rows directly; a resumed
stream starts at its step without decoding the batches before it; a reordered stream fails."""

from __future__ import annotations

import dataclasses
import io
import math
import re
from collections import Counter

import numpy as np
import pyarrow as pa
import pytest
import torch
from PIL import Image

from dualvad import schema as S
from dualvad.benchmarks.templates import frame_prefix
from dualvad.config import ConfigError, load_config
from dualvad.pipeline import finetune_data as data
from dualvad.vlm.mixing import IMAGE, VIDEO, draws_per_epoch
from dualvad.vlm.model import save_tiny_model
from dualvad.vlm.processor import load_processor

WORLD = 2
STEPS = 3
MAX_LENGTH = 512


def _jpeg(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG")
    return buffer.getvalue()


def _turns(*values: str) -> list[dict]:
    return [{"from": "human" if i % 2 == 0 else "gpt", "value": v} for i, v in enumerate(values)]


IMAGE_ROWS = [{S.ROW_ID: f"image-{i}", "image": _jpeg(i),
               S.CONVERSATIONS: _turns("<image>\nIs there an anomaly?", ["Yes", "No"][i % 2])}
              for i in range(7)]
VIDEO_ROWS = [{S.ROW_ID: f"video-{i}", "images": [_jpeg(100 + 3 * i + j) for j in range(1 + i % 3)],
               S.CONVERSATIONS: _turns(f"{frame_prefix(1 + i % 3)}\nWhich frames?", f"Frame{1 + i % 3}")}
              for i in range(5)]
ROWS = {IMAGE: IMAGE_ROWS, VIDEO: VIDEO_ROWS}


def _settings(**changes):
    base = dataclasses.replace(load_config().finetune, workers=WORLD, micro_batch=2, grad_accum=2,
                               image_weight=1.0, video_weight=2.0, curriculum="joint", seed=3)
    return dataclasses.replace(base, **changes)


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    processor = load_processor(save_tiny_model(tmp_path_factory.mktemp("tiny_internvl_data")))
    return data.Encoder(processor, MAX_LENGTH, int(processor.tokenizer.pad_token_id))


@pytest.fixture(scope="module")
def stores(ray_session):
    """Both benchmarks staged in pieces of 2 rows, so a gather spans several pieces."""
    original = data.PIECE_ROWS
    data.PIECE_ROWS = 2
    try:
        return {kind: data.stage_rows(ray_session.data.from_items(rows), kind) for kind, rows in ROWS.items()}
    finally:
        data.PIECE_ROWS = original


def _shards(stores, settings, monkeypatch, path: data.DataPath = "stream") -> list:
    """Each rank's ``DataIterator`` on ``path``, configured as Ray Train configures them (draw blocks of 3
    rows: micro-batches of 2 straddle blocks)."""
    monkeypatch.setattr(data, "DRAW_BLOCK_ROWS", 3)
    datasets = data.rank_datasets(stores, settings, STEPS, path)
    iterators = data.data_config(list(datasets)).configure(datasets, world_size=WORLD, worker_handles=None,
                                                           worker_node_ids=None)
    return [iterators[rank][data.shard_name(rank)] for rank in range(WORLD)]


def _expected(settings, rank: int, encoder) -> list[dict[str, torch.Tensor]]:
    """The rank's micro-batches encoded straight from the Python rows: rank ``r`` holds rows ``r, r + 2, ...``
    of each benchmark."""
    mine = {kind: rows[rank::WORLD] for kind, rows in ROWS.items()}
    draws = data.rank_draws(len(mine[IMAGE]), len(mine[VIDEO]), settings, rank, STEPS)
    size = settings.micro_batch
    return [encoder([mine[kind][index] for kind, index in draws[first:first + size]])
            for first in range(0, len(draws), size)]


def _same(batches: list[dict], expected: list[dict]) -> bool:
    return len(batches) == len(expected) and all(
        batch.keys() == want.keys() and all(torch.equal(batch[key], want[key]) for key in want)
        for batch, want in zip(batches, expected, strict=True))


def test_each_ranks_draws_follow_the_weights_over_its_own_rows():
    settings = _settings(workers=3, micro_batch=2, grad_accum=3)
    needed = STEPS * 3 * 2
    held = {kind: [data.rank_rows(len(rows), rank, 3) for rank in range(3)] for kind, rows in ROWS.items()}
    assert held == {IMAGE: [3, 2, 2], VIDEO: [2, 2, 1]}  # every row used, shards differ by one row
    for rank in range(3):
        n_image, n_video = held[IMAGE][rank], held[VIDEO][rank]
        draws = data.rank_draws(n_image, n_video, settings, rank, STEPS)
        assert len(draws) == needed  # every rank runs the same steps, whatever its shard
        assert all(index < {IMAGE: n_image, VIDEO: n_video}[kind] for kind, index in draws)
        per_epoch = (draws_per_epoch(n_image, 1.0), draws_per_epoch(n_video, 2.0))
        epochs = math.ceil(needed / sum(per_epoch))
        counts = Counter(kind for kind, _ in draws)
        # joint: the epochs' draws interleave evenly in the weights' ratio, cut at the run's length
        assert abs(counts[IMAGE] - needed * per_epoch[0] / sum(per_epoch)) <= 1
        assert epochs >= 2 and len(set(draws)) == n_image + n_video  # repeated passes over the rows
    same_rows = [data.rank_draws(2, 2, settings, rank, STEPS) for rank in (0, 1)]
    assert same_rows[0] != same_rows[1]  # seeded per rank
    with pytest.raises(ValueError, match="nothing to train on"):
        data.rank_draws(0, 0, settings, 0, STEPS)


def test_the_stream_and_the_memory_path_give_the_batches_of_the_schedule(stores, encoder, monkeypatch):
    settings = _settings()
    for mode in ("stream", "memory"):
        for rank, shard in enumerate(_shards(stores, settings, monkeypatch, mode)):
            batches = list(data.micro_batches(shard, settings, rank, STEPS, 0, encoder, mode))
            assert len(batches) == STEPS * settings.grad_accum
            assert _same(batches, _expected(settings, rank, encoder)), (mode, rank)


class CountingEncoder:
    """An :class:`Encoder` that counts the rows it encodes."""

    def __init__(self, encoder: data.Encoder) -> None:
        self.encoder, self.rows = encoder, 0

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        self.rows += len(rows)
        return self.encoder(rows)


def test_a_resumed_stream_starts_at_its_step_without_decoding_earlier_batches(stores, encoder, monkeypatch):
    settings = _settings(image_weight=2.0, curriculum="image_first")
    shard = _shards(stores, settings, monkeypatch)[1]
    counting = CountingEncoder(encoder)
    start = 2 * settings.grad_accum  # resuming after step 2 of 3
    batches = list(data.micro_batches(shard, settings, 1, STEPS, start, counting))
    assert _same(batches, _expected(settings, 1, encoder)[start:])
    assert counting.rows == (STEPS * settings.grad_accum - start) * settings.micro_batch


def test_a_micro_batch_of_non_consecutive_draws_is_an_error(stores, encoder):
    gathered = data.gather(pa.table({data.DRAW: [4, 6], data.BENCHMARK: [VIDEO, IMAGE], data.ROW: [3, 0]}),
                           stores)
    assert gathered[S.ROW_ID].to_pylist() == ["video-3", "image-0"]
    collate = data.EncodeCollate(encoder, start=0)
    with pytest.raises(RuntimeError, match=r"non-consecutive draws \[4, 6\]"):
        collate(gathered)


def test_the_data_path_is_the_benchs_checked_argument_not_a_config_key(stores):
    """bench/finetune.py picks the path with an argument (streaming is the default); no config key sets it,
    and an unknown path is an error, not a silent stream."""
    with pytest.raises(ValueError, match=r"must be one of \('stream', 'memory'\), got 'disk'"):
        data.rank_datasets(stores, _settings(), STEPS, "disk")
    for key in ("finetune.data=memory", "finetune.save_checkpoints=false"):
        with pytest.raises(ConfigError, match=f"unknown config key '{re.escape(key.split('=')[0])}'"):
            load_config(None, [key])
