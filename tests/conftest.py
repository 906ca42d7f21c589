"""Shared fixtures: one local Ray per test session (helpers for media live in media.py)."""

from __future__ import annotations

import contextlib
import io
import os

import pytest


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for the whole test session, 2 CPUs as on the CI machine."""
    import ray

    from dualvad.config import RayConfig
    from dualvad.pipeline.runtime import ensure_ray

    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    ensure_ray(RayConfig(num_cpus=2))
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def scored_run(ray_session, tmp_path_factory):
    """A generated corpus (20 videos of 3 s) ingested with K=8, a scorer trained on it (1 worker, TensorBoard
    tracking on) and every segment scored: (config, train summary). Shared by the tests of later stages."""
    from dualvad.config import load_config
    from dualvad.corpus import SynthSpec, generate_corpus
    from dualvad.pipeline.ingest import run_ingest
    from dualvad.pipeline.score import run_score
    from dualvad.train.scorer import train_scorer

    root = tmp_path_factory.mktemp("scored")
    generate_corpus(root / "corpus", SynthSpec(videos=20, seconds=3.0, seed=5))
    config = load_config(None, [f"corpus={root / 'corpus'}", f"run={root / 'run'}", "ingest.segments=8",
                                "ingest.cpus_per_worker=0.5", "scorer.epochs=30", "scorer.workers=1",
                                "scorer.cpus_per_worker=0.5", "scorer.topk=2", "scorer.report_every=10",
                                "scorer.tracking=tensorboard"])
    run_ingest(config)
    summary = train_scorer(config)
    run_score(config)
    return config, summary


@pytest.fixture(scope="session")
def evaluated_copy(scored_run, tmp_path_factory):
    """A copy of the scored run (other modules re-sample and re-build the shared one), sampled (budget 8)
    and evaluated with a tiny VLM (one strategy, 56 px frames, clips of 4): (config, run, tiny model
    folder). The detector's tests and the serve tests share it."""
    import dataclasses
    import shutil

    from dualvad import paths
    from dualvad.pipeline.evaluate import run_evaluate
    from dualvad.pipeline.sample import run_sample
    from dualvad.rundir import open_run
    from dualvad.vlm.model import save_tiny_model

    config, _ = scored_run
    root = tmp_path_factory.mktemp("evaluated")
    target = root / "run"
    shutil.copytree(config.run, target, ignore=shutil.ignore_patterns(
        paths.LOCK_FILE, paths.WORK_DIR, paths.SAMPLES, paths.BENCHMARKS, paths.FINETUNE, paths.EVAL))
    tiny = save_tiny_model(root / "vlm")
    config = dataclasses.replace(
        config, run=str(target),
        eval=dataclasses.replace(config.eval, model=str(tiny), ablate="none", workers=1, cpus_per_worker=0.5,
                                 timeline_videos=1, thumbnails=1, max_new_tokens=4),
        sample=dataclasses.replace(config.sample, budget=8),
        benchmarks=dataclasses.replace(config.benchmarks, clip_frames=4, image_size=56))
    run_sample(config)
    run_evaluate(config)
    return config, open_run(config.run), tiny


@pytest.fixture(scope="session")
def tiny_demo(ray_session, tmp_path_factory):
    """``dualvad demo`` on 12 generated videos of 1 s with tinyrun's TINY settings (the smallest that still
    run every stage) and the tiny VLM, not the demo profile's ``small``: (run folder, exit code, console
    output). The demo test checks its outputs; the job test compares its CPU stages with a job of the same
    settings."""
    from dualvad.cli import main

    from tinyrun import TINY

    run = tmp_path_factory.mktemp("tiny-demo") / "demo"
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["demo", "--run", str(run), "--videos", "12", "synth.seconds=1.0", *TINY,
                     "finetune.model=tiny", "finetune.micro_batch=1"])
    return run, code, out.getvalue() + err.getvalue()
