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
