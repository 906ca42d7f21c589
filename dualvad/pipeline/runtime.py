"""Connecting to Ray: a local instance by default, a cluster when an address is given."""

from __future__ import annotations

import logging
import os

import ray

from dualvad.config import RayConfig
from dualvad.stages import reclaim_signals

log = logging.getLogger(__name__)


def ensure_ray(config: RayConfig) -> None:
    """Start or join Ray once per process; later calls reuse the running instance."""
    if ray.is_initialized():
        return
    address = config.address or os.environ.get("RAY_ADDRESS")
    if address:
        log.info("joining Ray cluster at %s", address)
        ray.init(address=address)
    else:
        # Workers must import dualvad from this checkout even when it is not installed.
        ray.init(
            num_cpus=config.num_cpus,
            include_dashboard=False,
            runtime_env={"env_vars": {"PYTHONPATH": _package_parent()}},
        )
    reclaim_signals()  # ray.init replaced the running stage's SIGTERM handler with its own


def _package_parent() -> str:
    import dualvad

    parent = os.path.dirname(os.path.dirname(os.path.abspath(dualvad.__file__)))
    existing = os.environ.get("PYTHONPATH")
    return f"{parent}{os.pathsep}{existing}" if existing else parent


def actor_pool(workers: int | None, items: int) -> ray.data.ActorPoolStrategy:
    """The actor pool for ``items`` inputs: exactly ``workers`` actors when given (all started at
    once, no ramp-up), else autoscaling from 1 up to one per CPU of the cluster."""
    if workers:
        size = max(1, min(workers, items))
        return ray.data.ActorPoolStrategy(min_size=size, max_size=size)
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    return ray.data.ActorPoolStrategy(min_size=1, max_size=max(1, min(cpus, items)))
