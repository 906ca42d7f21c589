"""One prepared GPU check (issue 30): fine-tuning, the Judge and ingest scaling on one GPU machine, one table.

Run through ``bench/gpu.sh`` (which bounds it to 9 minutes). On one GPU (an H100 with 16 cores in mind):

1. **fine-tuning**: ``bench/finetune.py``'s GPU measurement: the real InternVL3-2B architecture with
   random weights (:func:`dualvad.vlm.model.internvl3_2b_config`, nothing downloaded), bf16, ZeRO-2,
   gradient checkpointing, video-benchmark rows of 8 frames at 448 px, micro-batch 2, one Ray Train worker
   per GPU: tokens/s, MFU against the dense bf16 peak (:mod:`dualvad.train.flops`), peak GPU memory;
2. **Judge**: the same model (bf16, ``cuda``) as :class:`~dualvad.vlm.inference.VLMJudge` scoring 448-px
   frames (P("Yes"), the Judge's per-frame pass) at batch 1, 8 and 32: frames/s;
3. **ingest**: a UCF-like corpus (:mod:`dualvad.corpus.ucf_like`: ``--ingest-videos`` videos of 320 x 240,
   1-8 minutes times ``--ingest-scale``, no HD videos; generated on every core, about a minute) through the
   ingest stage with 1, 2, 4, 8 and 16 workers of one core: frames/s and parallel efficiency (frames/s
   with N workers / (N x frames/s with 1)).

``--dry-run`` runs anywhere, in seconds: it parses the arguments, builds every config the check would
run (fine-tuning, ingest per worker count, the Judge's batch sizes), builds InternVL3-2B on PyTorch's
meta device and prints its parameter count and the plan; nothing is generated, trained or timed.
No figure is ever printed that was not measured on the machine it names.

    bench/gpu.sh                 # on the GPU machine
    bench/gpu.sh --dry-run       # anywhere
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))  # the sibling benchmarks, also when imported by a test

JUDGE_BATCHES = (1, 8, 32)
INGEST_WORKERS = (1, 2, 4, 8, 16)
JUDGE_FRAMES = 64
MODEL_PLACEHOLDER = "internvl3-2b-random"  # finetune.model until the random model is written


@dataclass(frozen=True)
class Plan:
    """What the check runs: every config built before anything starts (so a bad one fails in seconds)."""

    finetune_overrides: list[str]
    ingest_overrides: dict[int, list[str]]  # workers -> overrides (corpus and run added when run)
    judge_batches: tuple[int, ...]
    steps: int


def main(argv: list[str] | None = None) -> None:
    args = _args(argv)
    plan = build_plan(args)
    if args.dry_run:
        dry_run(plan)
        return
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("bench/gpu.sh: CUDA reports no device; run it on a GPU machine, or pass --dry-run")
    rows: list[tuple[str, str]] = []
    started = time.perf_counter()
    model = _finetune_rows(args, plan, rows)
    _judge_rows(model, plan, rows)
    _ingest_rows(args, plan, rows)
    _print_table(rows, torch.cuda.get_device_name(0), time.perf_counter() - started)


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/gpu.sh", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="configs and the meta-device model only")
    parser.add_argument("--steps", type=int, default=8, help="fine-tuning optimizer steps (>= 2)")
    parser.add_argument("--ingest-videos", type=int, default=64, help="videos of the ingest corpus")
    parser.add_argument("--ingest-scale", type=float, default=1.0,
                        help="the ingest corpus's lengths times this (1.0: mean 4 minutes)")
    args = parser.parse_args(argv)
    if args.steps < 2:
        parser.error(f"--steps must be >= 2 (the first step is not counted), got {args.steps}")
    if args.ingest_scale <= 0 or args.ingest_videos < 16:
        parser.error(f"--ingest-scale must be > 0 and --ingest-videos >= 16 (one per worker at least), got "
                     f"{args.ingest_scale} and {args.ingest_videos}")
    return args


def build_plan(args: argparse.Namespace) -> Plan:
    """Every config of the check, loaded (hence checked) by :func:`dualvad.config.load_config`."""
    from finetune import _gpu_overrides

    from dualvad.config import load_config

    cpus_per_worker = float(max(1, (os.cpu_count() or 2) - 1))  # one core left to the driver
    finetune = _gpu_overrides(MODEL_PLACEHOLDER, 1, cpus_per_worker, args.steps)
    load_config(None, finetune)
    ingest = {n: [f"ingest.workers={n}", "ingest.cpus_per_worker=1", f"ray.num_cpus={max(INGEST_WORKERS)}"]
              for n in INGEST_WORKERS}
    for overrides in ingest.values():
        load_config(None, overrides)
    return Plan(finetune, ingest, JUDGE_BATCHES, args.steps)


def dry_run(plan: Plan) -> None:
    """The plan and InternVL3-2B's size, built on the meta device (no memory, no GPU)."""
    from dualvad.config import load_config
    from dualvad.vlm.model import build_meta_model, count_parameters, internvl3_2b_config

    settings = load_config(None, plan.finetune_overrides).finetune
    model = build_meta_model(internvl3_2b_config())
    print(f"dry run: InternVL3-2B on the meta device, {count_parameters(model):,} parameters; fine-tuning "
          f"{plan.steps} steps, ZeRO-{settings.zero_stage}, micro-batch {settings.micro_batch}, gradient "
          f"checkpointing {settings.gradient_checkpointing}; Judge at batch {list(plan.judge_batches)}; "
          f"ingest with {list(plan.ingest_overrides)} workers; nothing measured")


# --------------------------------------------------------------------------------------------- parts


def _finetune_rows(args: argparse.Namespace, plan: Plan, rows: list[tuple[str, str]]) -> Path:
    """Fine-tune the random 2B model; returns its folder (the Judge loads it)."""
    import torch
    from finetune import GPU_IMAGE_SIZE, _benchmarked_run, _finetune, _random_internvl3_2b, _summary

    bench_args = argparse.Namespace(videos=12, seconds=3.0, epochs=5, seed=11, cameras=0)
    config = _benchmarked_run(bench_args, GPU_IMAGE_SIZE, ray_cpus=os.cpu_count() or 1)
    model = _random_internvl3_2b(Path(config.run).parent / "internvl3-2b-random")
    overrides = [o.replace(MODEL_PLACEHOLDER, str(model)) for o in plan.finetune_overrides]
    history = _finetune(config, Path(config.run) / "benchmarks", "gpu-check", overrides)
    figures = _summary(history)
    mfu = "n/a (device not in PEAK_BF16_FLOPS)" if figures["mfu"] is None else f"{100 * figures['mfu']:.1f}%"
    rows += [("fine-tune tokens/s (median of steps 2..)", f"{figures['tokens_per_s']:.0f}"),
             ("fine-tune samples/s", f"{figures['samples_per_s']:.2f}"),
             ("fine-tune MFU (dense bf16 peak)", mfu),
             ("fine-tune peak GPU memory", f"{figures['peak_gpu_mib']:.0f} MiB"),
             ("fine-tune peak RSS per worker", f"{figures['peak_rss_mib']:.0f} MiB")]
    torch.cuda.empty_cache()
    return model


def _judge_rows(model: Path, plan: Plan, rows: list[tuple[str, str]]) -> None:
    """frames/s of the Judge's per-frame pass at each batch size, on 448-px frames."""
    import numpy as np
    import torch
    from PIL import Image

    from dualvad.vlm.judge import load_vlm_judge

    rng = np.random.default_rng(0)
    frames = [Image.fromarray(rng.integers(0, 256, (448, 448, 3), dtype=np.uint8))
              for _ in range(JUDGE_FRAMES)]
    judge = load_vlm_judge(str(model), "cuda", batch_size=1)
    for batch in plan.judge_batches:
        judge.batch_size = batch
        judge.frame_scores(frames[:batch])  # warm-up: kernels for this shape
        torch.cuda.synchronize()
        started = time.perf_counter()
        judge.frame_scores(frames)
        torch.cuda.synchronize()
        rate = len(frames) / (time.perf_counter() - started)
        rows.append((f"Judge frames/s at batch {batch}", f"{rate:.1f}"))
    del judge
    torch.cuda.empty_cache()


def _ingest_rows(args: argparse.Namespace, plan: Plan, rows: list[tuple[str, str]]) -> None:
    """The ingest stage on the UCF-like corpus with each worker count: frames/s and parallel efficiency."""
    import shutil
    import tempfile

    import ray

    from dualvad.config import load_config
    from dualvad.corpus.ucf_like import UcfLikeSpec
    from dualvad.pipeline.ingest import run_ingest
    from dualvad.pipeline.runtime import ensure_ray

    from common import OUT, ucf_like_corpus

    spec = UcfLikeSpec(videos=args.ingest_videos, hd_videos=0, scale=args.ingest_scale)
    corpus = ucf_like_corpus(spec, parallel=os.cpu_count() or 1)
    rates = {}
    for workers, overrides in plan.ingest_overrides.items():
        run = Path(tempfile.mkdtemp(prefix=f"gpu-ingest-{workers}w-", dir=OUT))
        config = load_config(None, [f"corpus={corpus}", f"run={run}", *overrides])
        ensure_ray(config.ray)
        ray.data.DataContext.get_current().enable_progress_bars = False
        summary = run_ingest(config)
        frames = _corpus_frames(run)
        rates[workers] = frames / summary.seconds
        shutil.rmtree(run)
    for workers, rate in rates.items():
        efficiency = rate / (workers * rates[1])
        rows.append((f"ingest, {workers} worker{'s' if workers > 1 else ''}: frames/s (efficiency)",
                     f"{rate:.0f} ({100 * efficiency:.0f}%)"))


def _corpus_frames(run: Path) -> int:
    """Video frames the ingest run covered: the sum of each video's ``num_frames``."""
    from dualvad import schema as S
    from dualvad.rundir import open_run

    table = open_run(str(run)).read_table("segments")
    pairs = set(zip(table[S.VIDEO_ID].to_pylist(), table[S.NUM_FRAMES].to_pylist(), strict=True))
    return sum(frames for _, frames in pairs)


def _print_table(rows: list[tuple[str, str]], device: str, seconds: float) -> None:
    width = max(len(name) for name, _ in rows)
    print(f"\n## GPU check on {device}, {os.cpu_count()} CPUs ({seconds:.0f} s)\n")
    print(f"| {'measure':<{width}} | value |")
    print(f"| {'-' * width} | --- |")
    for name, value in rows:
        print(f"| {name:<{width}} | {value} |")


if __name__ == "__main__":
    main()
