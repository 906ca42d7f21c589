"""Shared set-up of the benchmarks: a generated corpus, ingested, with a trained scorer."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"


def prepared_run(name: str, videos: int, seconds: float, seed: int, overrides: list[str], cameras: int = 0):
    """Generate (once) a corpus (``cameras``: ``synth.cameras``) and ingest it (once) into
    ``bench/out/<name>/<corpus>/run``.

    Returns (config, corpus path); Ray is started with 2 CPUs and quiet progress bars.
    """
    import ray

    from dualvad.config import load_config
    from dualvad.corpus import SynthSpec, generate_corpus
    from dualvad.pipeline.ingest import run_ingest
    from dualvad.pipeline.runtime import ensure_ray

    folder = OUT / name / f"{videos}x{seconds:g}s-seed{seed}{f'-cam{cameras}' if cameras else ''}"
    corpus = folder / "corpus"
    if not (corpus / "annotations").is_dir():
        generate_corpus(corpus, SynthSpec(videos=videos, seconds=seconds, seed=seed, cameras=cameras))
    config = load_config(None, [f"corpus={corpus}", f"run={folder / 'run'}", "ray.num_cpus=2", *overrides])
    ensure_ray(config.ray)
    ray.data.DataContext.get_current().enable_progress_bars = False
    print(run_ingest(config))
    return config, corpus


def variant_run(config, name: str, overrides: list[str]):
    """A run beside ``config.run`` sharing its segments (a symlink), with other settings."""
    from dualvad.config import load_config

    base = Path(config.run)
    run = base.parent / name
    run.mkdir(parents=True, exist_ok=True)
    if not (run / "segments").exists():
        os.symlink(base / "segments", run / "segments")
    return load_config(None, [f"corpus={config.corpus}", "ray.num_cpus=2", *overrides, f"run={run}"])


def corpus_arguments(description: str, videos: int = 80) -> argparse.ArgumentParser:
    """A parser with the generated corpus and scorer options the benchmarks share."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--videos", type=int, default=videos)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--epochs", type=int, default=40, help="scorer training epochs")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--cameras", type=int, default=0, help="synth.cameras (0: a scene per video)")
    return parser
