"""Fine-tuning throughput and memory (Ray Train + DeepSpeed ZeRO-2), side by side in one run.

CPU (default without CUDA): the tiny random InternVL on benchmarks built from a generated corpus (clips of
8 frames, frames stored at 448 px as the benchmarks' default, so decoding costs what it costs on a
cluster; the tiny model resizes them to 56 px tiles), with 1 and with 2 Ray Train
workers of one core each (fp32, gloo): global samples/s and tokens/s (median over the steps after the
first) and the peak RSS of the busiest worker. Then the two data paths (``run_finetune``'s ``data``, not a
config key): ``memory`` (each worker loads its whole shard, decodes in the step) against ``stream`` (Ray
Data, decoded ahead of the step), ``--rounds`` interleaved runs each, on the benchmark repeated ``--repeat``
times and on one 4x larger (every shard 4 x ``--repeat`` times): the memory path's peak RSS grows with the
benchmark, the stream's stays flat. Last, each path's micro-batches alone in the driver with a 50 ms pause
standing in for a step that leaves the CPU free (a GPU step): how much of the decoding the stream hides.

GPU (``--gpu``, or whenever CUDA is available): the real InternVL3-2B architecture with random weights
(:func:`dualvad.vlm.model.internvl3_2b_config`, nothing downloaded, written once in bf16), video-benchmark
rows of 8 frames at 448 px only, micro-batch 2, ZeRO-2 bf16, gradient checkpointing, one worker per GPU:
tokens/s, MFU (:mod:`dualvad.train.flops`) and peak GPU memory (``torch.cuda.max_memory_allocated``).
``--gpu --dry-run`` builds that set-up on PyTorch's meta device and prints its parameter split, FLOPs and
DeepSpeed config without training (runs anywhere).

Runs write no checkpoints (``run_finetune(save_checkpoints=False)``): a 2B model's ZeRO state is ~29 GB.

    python bench/finetune.py                     # CPU: 1 vs 2 workers, memory vs stream
    python bench/finetune.py --gpu               # on a GPU node
    python bench/finetune.py --gpu --dry-run     # the GPU set-up on the meta device
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import statistics
from pathlib import Path

from common import corpus_arguments, prepared_run

CLIP_FRAMES = 8  # frames per video-benchmark row
GPU_MICRO_BATCH = 2
GPU_IMAGE_SIZE = 448  # InternVL3's tile size
CPU_IMAGE_SIZE = 448  # the benchmarks' default; the tiny model resizes to 56 px tiles
CPU_WORKERS = (1, 2)
COMPARE_WORKERS = 2  # the data-path comparison: the default finetune.workers
LARGER = 4  # the larger benchmark of the comparison


def main() -> None:
    args = _args()
    import torch  # here, not at the top: bench/gpu.py --dry-run reads this module's settings without it

    gpu = args.gpu or torch.cuda.is_available()
    if args.dry_run:
        if not gpu:
            raise SystemExit("--dry-run describes the GPU set-up: pass --gpu")
        _gpu_dry_run(args)
    elif gpu:
        _gpu_bench(args)
    else:
        _cpu_bench(args)


def _args() -> argparse.Namespace:
    parser = corpus_arguments(__doc__.split("\n\n")[0])
    parser.set_defaults(videos=12, seconds=3.0, epochs=5)
    parser.add_argument("--steps", type=int, default=16, help="optimizer steps per configuration")
    parser.add_argument("--repeat", type=int, default=16,
                        help="CPU: every benchmark shard this many times in the data-path comparison")
    parser.add_argument("--rounds", type=int, default=2, help="CPU: runs of each data-path configuration")
    parser.add_argument("--gpu", action="store_true", help="the real 2B architecture on GPUs")
    parser.add_argument("--dry-run", action="store_true", help="with --gpu: meta device, no training")
    return parser.parse_args()


# --------------------------------------------------------------------------------------------------- CPU


def _cpu_bench(args: argparse.Namespace) -> None:
    config = _benchmarked_run(args, CPU_IMAGE_SIZE, ray_cpus=2)
    benchmarks = Path(config.run) / "benchmarks"
    rows = []
    for workers in CPU_WORKERS:
        history = _finetune(config, benchmarks, f"cpu-{workers}-workers", _cpu_overrides(workers, args.steps))
        rows.append((workers, _summary(history)))
    print(f"\ntiny InternVL, ZeRO-2 fp32 on CPU, 1 core per worker, micro-batch 2, clips of {CLIP_FRAMES} "
          f"frames of {CPU_IMAGE_SIZE} px, {args.steps} steps (median over steps 2..{args.steps})")
    print(f"{'workers':>7} {'samples/s':>10} {'tokens/s':>9} {'samples/s/worker':>17} "
          f"{'peak RSS/worker MiB':>20}")
    for workers, figures in rows:
        print(f"{workers:>7} {figures['samples_per_s']:>10.2f} {figures['tokens_per_s']:>9.0f} "
              f"{figures['samples_per_s'] / workers:>17.2f} {figures['peak_rss_mib']:>20.0f}")
    _compare_data_paths(config, args)


def _cpu_overrides(workers: int, steps: int) -> list[str]:
    return ["finetune.model=tiny", f"finetune.workers={workers}", "finetune.cpus_per_worker=1.0",
            "finetune.micro_batch=2", "finetune.max_length=1024", *_run_overrides(steps)]


def _compare_data_paths(config, args: argparse.Namespace) -> None:
    """memory vs stream, ``COMPARE_WORKERS`` workers, on the benchmark repeated ``repeat`` and ``LARGER *
    repeat`` times; ``rounds`` runs of each, interleaved (the machine's load drifts between runs)."""
    sizes = [(copies, *_repeated_benchmarks(Path(config.run), copies))
             for copies in (args.repeat, LARGER * args.repeat)]
    histories: dict[tuple[str, int], list[list[dict]]] = {}
    for round_ in range(args.rounds):
        for copies, benchmarks, _, _ in sizes:
            for data in ("memory", "stream"):
                history = _finetune(config, benchmarks, f"cpu-{data}-x{copies}-{round_}",
                                    _cpu_overrides(COMPARE_WORKERS, args.steps), data=data)
                histories.setdefault((data, copies), []).append(history)
    print(f"\ndata paths: {COMPARE_WORKERS} workers, otherwise as above; every benchmark shard x copies "
          f"(train rows, MiB of their JPEGs); samples/s: median over the steady steps of {args.rounds} runs; "
          "peak RSS: of each run")
    print(f"{'data':>6} {'copies':>6} {'train':>6} {'JPEG MiB':>9} {'samples/s':>10} {'tokens/s':>9} "
          f"{'peak RSS/worker MiB':>20}")
    peaks = {}
    for copies, _, rows, mib in sizes:
        for data in ("memory", "stream"):
            runs = histories[(data, copies)]
            figures = _summary([entry for history in runs for entry in history[1:]])
            peaks[(data, copies)] = [_summary(history)["peak_rss_mib"] for history in runs]
            listed = ", ".join(f"{peak:.0f}" for peak in peaks[(data, copies)])
            print(f"{data:>6} {copies:>6} {rows:>6} {mib:>9.1f} {figures['samples_per_s']:>10.2f} "
                  f"{figures['tokens_per_s']:>9.0f} {listed:>20}")
    small, large = args.repeat, LARGER * args.repeat
    for data in ("memory", "stream"):
        growth = statistics.median(peaks[(data, large)]) - statistics.median(peaks[(data, small)])
        print(f"{data}: median peak RSS/worker {growth:+.0f} MiB from x{small} to x{large}")
    _data_path_alone(config, sizes[0][1])


def _data_path_alone(config, benchmarks: Path, steps: int = 64, step_s: float = 0.05) -> None:
    """Each path's micro-batches for one rank in this process, without training: ms per micro-batch when
    every batch is followed by a ``step_s`` pause (a stand-in step that leaves the CPU free, as a GPU step
    would), after the first batch. The stream's decoding hides behind the pause; the memory path's adds
    to it."""
    import time

    from dualvad.config import load_config
    from dualvad.pipeline import finetune_data as data
    from dualvad.rundir import open_run
    from dualvad.train.finetune import _train_rows
    from dualvad.vlm.model import save_tiny_model
    from dualvad.vlm.processor import load_processor

    folder = Path(config.run).parent / "data-path-alone"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    os.symlink(benchmarks, folder / "benchmarks")
    processor = load_processor(save_tiny_model(folder / "tiny"))
    encoder = data.Encoder(processor, 1024, int(processor.tokenizer.pad_token_id))
    stores = {kind: data.stage_rows(_train_rows(open_run(str(folder)), kind), kind) for kind in data.KINDS}
    print(f"\ndata path alone: 1 rank, micro-batch 2, {steps} batches, a {1000 * step_s:.0f} ms pause each "
          "(the memory path's first batch waits for all its rows)")
    for path in ("memory", "stream"):
        settings = load_config(None, ["finetune.workers=1", "finetune.micro_batch=2"]).finetune
        datasets = data.rank_datasets(stores, settings, steps, path)
        shard = data.data_config(list(datasets)).configure(
            datasets, world_size=1, worker_handles=None, worker_node_ids=None)[0][data.shard_name(0)]
        started = time.perf_counter()
        batches = data.micro_batches(shard, settings, 0, steps, 0, encoder, path)
        next(batches)
        first = time.perf_counter()
        for _ in batches:
            time.sleep(step_s)
        per_batch = (time.perf_counter() - first) / (steps - 1)
        print(f"{path:>6}: first batch after {first - started:.2f} s, then {1000 * per_batch:.0f} ms a batch")


def _repeated_benchmarks(run: Path, copies: int) -> tuple[Path, int, float]:
    """A benchmarks folder beside ``run`` whose ``image/`` and ``video/`` list every shard of ``run``'s
    ``copies`` times (symlinks; the stage record copied, so fine-tuning accepts it as built). Returns the
    folder, its train-split rows and the MiB of their JPEGs (what the memory path holds, over all workers)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    source = run / "benchmarks"
    target = run.parent / f"benchmarks-x{copies}"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir()
    for entry in source.iterdir():
        if entry.is_file():
            shutil.copy(entry, target / entry.name)
    rows, size = 0, 0
    for kind, column in (("image", "image"), ("video", "images")):
        (target / kind).mkdir()
        for shard in sorted((source / kind).glob("*.parquet")):
            for copy in range(copies):
                os.symlink(shard, target / kind / f"{shard.stem}-copy{copy}.parquet")
            table = pq.read_table(shard, columns=["split", column])
            train = table.filter(pc.equal(table["split"], "train"))[column]
            if column == "images":
                train = pc.list_flatten(train)
            rows += copies * len(table.filter(pc.equal(table["split"], "train")))
            size += copies * pc.sum(pc.binary_length(train)).as_py()
    return target, rows, size / 2**20


# --------------------------------------------------------------------------------------------------- GPU


def _gpu_overrides(model: str, workers: int, cpus_per_worker: float, steps: int) -> list[str]:
    """The fine-tuning settings of the GPU measurement: video rows only (8 frames), micro-batch 2."""
    return [f"finetune.model={model}", "finetune.use_gpu=true", f"finetune.workers={workers}",
            f"finetune.cpus_per_worker={cpus_per_worker}", "finetune.zero_stage=2",
            f"finetune.micro_batch={GPU_MICRO_BATCH}", "finetune.grad_accum=1",
            "finetune.gradient_checkpointing=true", "finetune.max_length=4096", "finetune.image_weight=0.0",
            "finetune.lr=0.00001", *_run_overrides(steps)]


def _gpu_bench(args: argparse.Namespace) -> None:
    import torch

    workers = torch.cuda.device_count()
    if workers < 1:
        raise SystemExit("--gpu: CUDA reports no device")
    cpus = os.cpu_count() or 1
    config = _benchmarked_run(args, GPU_IMAGE_SIZE, ray_cpus=cpus)
    model = _random_internvl3_2b(Path(config.run).parent / "internvl3-2b-random")
    cpus_per_worker = float(max(1, (cpus - 1) // workers))  # one core left to the driver
    history = _finetune(config, Path(config.run) / "benchmarks", f"gpu-{workers}",
                        _gpu_overrides(str(model), workers, cpus_per_worker, args.steps))
    figures = _summary(history)
    mfu = "n/a (device not in dualvad.train.flops.PEAK_BF16_FLOPS)" if figures["mfu"] is None \
        else f"{100 * figures['mfu']:.1f}%"
    print(f"\nInternVL3-2B architecture (random weights), {workers} x {torch.cuda.get_device_name(0)}, "
          f"ZeRO-2 bf16, gradient checkpointing, micro-batch {GPU_MICRO_BATCH}, {CLIP_FRAMES} frames/sample")
    print(f"samples/s {figures['samples_per_s']:.2f}, tokens/s {figures['tokens_per_s']:.0f}, MFU {mfu}, "
          f"peak GPU memory {figures['peak_gpu_mib']:.0f} MiB per worker, peak RSS "
          f"{figures['peak_rss_mib']:.0f} MiB per worker")


def _random_internvl3_2b(folder: Path) -> Path:
    """Write (once) the InternVL3-2B architecture with random weights in bf16 (~4.2 GB) and its 448 px
    processor, so the fine-tuning loads it like a downloaded checkpoint. Built on the CPU: the driver
    keeps off the GPUs the workers use."""
    import torch
    from transformers import InternVLForConditionalGeneration

    from dualvad.vlm.model import image_tokens_per_tile, internvl3_2b_config
    from dualvad.vlm.processor import build_processor

    if (folder / "config.json").is_file():
        return folder
    config = internvl3_2b_config()
    torch.manual_seed(0)
    model = InternVLForConditionalGeneration(config).to(torch.bfloat16)
    model.save_pretrained(folder)
    processor = build_processor(image_size=GPU_IMAGE_SIZE, image_seq_length=image_tokens_per_tile(config))
    processor.save_pretrained(folder)
    return folder


def _gpu_dry_run(args: argparse.Namespace) -> None:
    """The GPU measurement's model and settings, on the meta device: what would train and at what cost."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    from dualvad.config import load_config
    from dualvad.train.finetune_worker import deepspeed_settings, prepare_model
    from dualvad.train.flops import flops_model, step_flops
    from dualvad.vlm.model import build_meta_model, internvl3_2b_config

    settings = load_config(None, _gpu_overrides("internvl3-2b-random", 1, 1.0, args.steps)).finetune
    model = prepare_model(build_meta_model(internvl3_2b_config()), settings)
    counts = flops_model(model)
    checkpointed = sum(isinstance(m, GradientCheckpointingLayer) and m.gradient_checkpointing
                       for m in model.modules())
    tokens = CLIP_FRAMES * (counts.image_tokens_per_tile + 2) + 100  # <img>..</img> per frame, ~100 text
    per_sample = step_flops(counts, tokens, CLIP_FRAMES)
    print(f"InternVL3-2B on the meta device: {sum(p.numel() for p in model.parameters()):,} parameters, "
          f"{checkpointed} vision + language layers with gradient checkpointing")
    for part in ("vision", "projector", "language"):
        split = getattr(counts, part)
        print(f"  {part:<9} trained {split.trained:>13,}  frozen {split.frozen:>11,}")
    print(f"training FLOPs per {CLIP_FRAMES}-frame sample of ~{tokens} tokens: {per_sample:.3e} "
          f"({per_sample / tokens:.3e} per token)")
    print(f"DeepSpeed config: {deepspeed_settings(settings, world=1)}")


# ------------------------------------------------------------------------------------------------ shared


def _run_overrides(steps: int) -> list[str]:
    """Measure ``steps`` steps at a constant lr, one report at the end (no checkpoints: :func:`_finetune`)."""
    return [f"finetune.max_steps={steps}", f"finetune.report_every={steps}", "finetune.warmup_steps=0"]


def _benchmarked_run(args: argparse.Namespace, image_size: int, ray_cpus: int):
    """A generated corpus through every stage up to the benchmarks (each skipped where already done)."""
    from dualvad.pipeline.build_benchmarks import run_build_benchmarks
    from dualvad.pipeline.sample import run_sample
    from dualvad.pipeline.score import run_score
    from dualvad.rundir import open_run
    from dualvad.train.train_scorer import run_train_scorer

    overrides = [f"scorer.epochs={args.epochs}", "scorer.report_every=5", f"ray.num_cpus={ray_cpus}",
                 "sample.budget=16", f"benchmarks.image_size={image_size}",
                 f"benchmarks.clip_frames={CLIP_FRAMES}", "benchmarks.shards=2"]
    config, _ = prepared_run(f"finetune-{image_size}px", args.videos, args.seconds, args.seed, overrides,
                             cameras=args.cameras)
    if not open_run(config.run).exists("scorer", "model"):
        print(run_train_scorer(config))
    print(run_score(config))
    print(run_sample(config))
    print(run_build_benchmarks(config))
    return config


def _finetune(config, benchmarks: Path, name: str, overrides: list[str], data: str = "stream") -> list[dict]:
    """Fine-tune without checkpoints, the rows on the ``data`` path, in a fresh run folder beside
    ``config.run`` whose benchmarks are ``benchmarks`` (a symlink); the step log."""
    import json

    from dualvad.config import load_config
    from dualvad.train.finetune import run_finetune

    run = Path(config.run).parent / name
    shutil.rmtree(run, ignore_errors=True)
    run.mkdir(parents=True)
    os.symlink(benchmarks, run / "benchmarks")
    variant = dataclasses.replace(load_config(None, [*overrides, f"run={run}"]), ray=config.ray)
    print(run_finetune(variant, data=data, save_checkpoints=False))
    return json.loads((run / "finetune" / "train_log.json").read_text())["history"]


def _summary(history: list[dict]) -> dict:
    """Medians over the steps after the first (which pays for allocations and the first collectives);
    peak memories are the maxima."""
    steady = history[1:] or history
    mfus = [entry["mfu"] for entry in steady if entry["mfu"] is not None]
    gpu = [entry["peak_gpu_mib"] for entry in history if entry["peak_gpu_mib"] is not None]
    return {"samples_per_s": statistics.median(entry["samples_per_s"] for entry in steady),
            "tokens_per_s": statistics.median(entry["tokens_per_s"] for entry in steady),
            "mfu": statistics.median(mfus) if mfus else None,
            "peak_rss_mib": max(entry["peak_rss_mib"] for entry in history),
            "peak_gpu_mib": max(gpu) if gpu else None}


if __name__ == "__main__":
    main()
