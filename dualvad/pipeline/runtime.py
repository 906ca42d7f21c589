"""Connecting to Ray: a local instance by default, a cluster when an address is given."""

from __future__ import annotations

import logging
import os

import ray

from dualvad.config import RayConfig

log = logging.getLogger(__name__)


def ensure_ray(config: RayConfig) -> None:
    """Start or join Ray once per process; later calls reuse the running instance."""
    if ray.is_initialized():
        return
    address = config.address or os.environ.get("RAY_ADDRESS")
    if address:
        log.info("joining Ray cluster at %s", address)
        ray.init(address=address)
        return
    # Workers must import dualvad from this checkout even when it is not installed.
    ray.init(
        num_cpus=config.num_cpus,
        include_dashboard=False,
        runtime_env={"env_vars": {"PYTHONPATH": _package_parent()}},
    )


def _package_parent() -> str:
    import dualvad

    parent = os.path.dirname(os.path.dirname(os.path.abspath(dualvad.__file__)))
    existing = os.environ.get("PYTHONPATH")
    return f"{parent}{os.pathsep}{existing}" if existing else parent
