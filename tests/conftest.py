"""Shared fixtures: one local Ray per test session (helpers for media live in media.py)."""

from __future__ import annotations

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
    """A generated corpus (20 videos of 3 s) ingested with K=8, a scorer trained on it (1 worker)
    and every segment scored: (config, train summary). Shared by the tests of later stages."""
    from dualvad.config import load_config
    from dualvad.corpus import SynthSpec, generate_corpus
    from dualvad.pipeline.ingest import run_ingest
    from dualvad.pipeline.score import run_score
    from dualvad.train.scorer import train_scorer

    root = tmp_path_factory.mktemp("scored")
    generate_corpus(root / "corpus", SynthSpec(videos=20, seconds=3.0, seed=5))
    config = load_config(None, [f"corpus={root / 'corpus'}", f"run={root / 'run'}", "ingest.segments=8",
                                "ingest.cpus_per_worker=0.5", "scorer.epochs=30", "scorer.workers=1",
                                "scorer.cpus_per_worker=0.5", "scorer.topk=2", "scorer.report_every=10"])
    run_ingest(config)
    summary = train_scorer(config)
    run_score(config)
    return config, summary
