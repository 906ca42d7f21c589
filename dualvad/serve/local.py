"""``dualvad serve``: the app on a local Ray, bound to one address, until Ctrl-C or SIGTERM."""

from __future__ import annotations

import logging
import signal
import threading

import ray
from ray import serve

from dualvad.config import RayConfig
from dualvad.pipeline.runtime import ensure_ray
from dualvad.serve.app import build_app
from dualvad.serve.settings import AppArgs

log = logging.getLogger(__name__)

APP_NAME = "dualvad"
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def serve_locally(args: AppArgs, ray_config: RayConfig, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Deploy :func:`build_app` on a local (or configured) Ray, say where it serves once its routes answer,
    and block until SIGINT or SIGTERM; then stop (no traceback, no stack dump): a local Ray it started is
    shut down with everything on it; on a Ray it joined, its app is deleted."""
    owns_ray = ensure_ray(ray_config)
    serve.start(http_options={"host": host, "port": port, "request_timeout_s": args.request_timeout_s})
    stop = threading.Event()
    # ours, not Ray's: its SIGTERM handler prints a native stack dump, and SIGINT a KeyboardInterrupt
    previous = {sig: signal.signal(sig, lambda signum, _frame: stop.set()) for sig in _STOP_SIGNALS}
    try:
        serve.run(build_app(args), name=APP_NAME, route_prefix="/", blocking=False)  # returns once RUNNING
        if not stop.is_set():
            log.info("serving %s on http://%s:%d/ (Ctrl-C stops)", args.run, host, port)
        while not stop.wait(0.5):  # returns to Python between waits: the handler runs here
            pass
        if owns_ray:
            log.info("stopping: shutting down the local Ray")
            ray.shutdown()
        else:
            log.info("stopping: deleting the app from the cluster")
            serve.delete(APP_NAME)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
