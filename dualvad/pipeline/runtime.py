"""Connecting to Ray: a local instance by default, a cluster when an address is given."""

from __future__ import annotations

import logging
import os

import ray
import ray.data  # configures its loggers on import: before _quiet_ray_driver adopts them

from dualvad import console
from dualvad.config import RayConfig
from dualvad.stages.interrupts import reclaim_signals

log = logging.getLogger(__name__)

#: The (private) logger Ray Data warns under that its progress bars are off; no public switch silences it.
#: tests/pipeline/test_runtime.py fails when a Ray upgrade moves it.
RAY_DATA_PROGRESS_LOGGER = "ray.data._internal.progress"


def ensure_ray(config: RayConfig) -> bool:
    """Start or join Ray once per process; later calls reuse the running instance (``dualvad demo`` and
    ``pipeline`` start it once before their first stage). True when this call started a local instance
    (whose owner shuts it down), False when it joined a cluster or Ray was already running.

    On a quiet console (:func:`dualvad.console.quiet`) the workers' output is not sent to the driver (it
    stays in Ray's session logs, which the CLI copies into ``RUN/logs``), Ray Data shows no progress bars
    and Ray's driver-side records go to the log file; one line says where Ray's dashboard and logs are."""
    _quiet_ray_driver()
    if ray.is_initialized():
        return False
    address = config.address or os.environ.get("RAY_ADDRESS")
    # RAY_ADDRESS=local: a new local instance, as ray.init reads it
    started = not address or address == "local"
    if started:
        _start_local(config)
    else:
        _join(address)
    reclaim_signals()  # ray.init replaced the running stage's SIGTERM handler with its own
    return started


def _join(address: str) -> None:
    context = ray.init(address=address, log_to_driver=not console.quiet())
    dashboard = f"http://{context.dashboard_url}" if context.dashboard_url else "none"
    log.info("Ray: joined the cluster at %s; dashboard %s; its workers log on their own nodes", address,
             dashboard, extra=console.SHOWN)


def _start_local(config: RayConfig) -> None:
    # Workers must import dualvad from this checkout even when it is not installed.
    context = ray.init(
        num_cpus=config.num_cpus,
        include_dashboard=config.dashboard,
        log_to_driver=not console.quiet(),
        runtime_env={"env_vars": {"PYTHONPATH": _package_parent()}},
    )
    logs = os.path.join(context.address_info["session_dir"], "logs")
    console.keep_ray_logs(logs)
    dashboard = (f"http://{context.dashboard_url}" if config.dashboard and context.dashboard_url
                 else "off (ray.dashboard=true starts it)")
    log.info("Ray: started a local instance with %d CPUs; dashboard %s; Ray's logs in %s",
             int(ray.cluster_resources().get("CPU", 0)), dashboard, logs, extra=console.SHOWN)


def _quiet_ray_driver() -> None:
    """On a quiet console: Ray's driver-side loggers to the log file (warnings still shown), no Ray Data
    progress bars (dualvad draws its own per stage). Undone when the console session ends."""
    if not console.active():
        return
    for name in ("ray", "ray.data"):  # neither propagates to the root; ray.train, ray.serve go via "ray"
        console.adopt_logger(name)
    if console.quiet():
        data_context = ray.data.DataContext.get_current()
        shown = data_context.enable_progress_bars
        data_context.enable_progress_bars = False
        console.at_end(lambda: setattr(data_context, "enable_progress_bars", shown))
        # ... and not its warning that they are off, which would tell the user to turn them back on
        notices = logging.getLogger(RAY_DATA_PROGRESS_LOGGER)
        level = notices.level
        notices.setLevel(logging.ERROR)
        console.at_end(lambda: notices.setLevel(level))


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
