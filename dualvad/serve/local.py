"""``dualvad serve``: the app on a local Ray, bound to one address, until Ctrl-C."""

from __future__ import annotations

import logging

from ray import serve

from dualvad.config import RayConfig
from dualvad.pipeline.runtime import ensure_ray
from dualvad.serve.app import build_app
from dualvad.serve.settings import AppArgs

log = logging.getLogger(__name__)

APP_NAME = "dualvad"


def serve_locally(args: AppArgs, ray_config: RayConfig, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Deploy :func:`build_app` on a local (or configured) Ray and block serving ``http://host:port/``."""
    ensure_ray(ray_config)
    serve.start(http_options={"host": host, "port": port, "request_timeout_s": args.request_timeout_s})
    log.info("serving %s on http://%s:%d/ (Ctrl-C stops)", args.run, host, port)
    serve.run(build_app(args), name=APP_NAME, route_prefix="/", blocking=True)
