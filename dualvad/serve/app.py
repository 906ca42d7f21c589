"""The Serve application: ``Api`` (FastAPI ingress) -> ``Analyzer`` -> ``Judge``, and ``Streams`` (live
streams, sharing the Judge), composed with ``.bind()``.

``serve run serve_config.yaml`` imports ``dualvad.serve.app:build_app`` and passes the config's ``args``;
``dualvad serve --run RUN`` calls :func:`build_app` itself. Resources, replicas and autoscaling are each
deployment's options, which ``serve_config.yaml`` overrides per deployment.
"""

from __future__ import annotations

from typing import Any

from ray import serve
from ray.serve import Application
from ray.serve.handle import DeploymentHandle

from dualvad.serve.api import DetectService, create_api
from dualvad.serve.deployments import Analyzer, Judge
from dualvad.serve.settings import AppArgs
from dualvad.serve.stream_api import StreamService
from dualvad.serve.streams import Streams, registry_actor


@serve.deployment(ray_actor_options={"num_cpus": 0.25}, max_ongoing_requests=64, max_queued_requests=64)
@serve.ingress()
class Api:
    """The HTTP ingress: holds no model, only the handles of the model deployments and the stream registry's.
    ``streams`` is bound so that Serve deploys it; streams are reached through the registry."""

    def __init__(self, analyzer: DeploymentHandle, judge: DeploymentHandle, streams: DeploymentHandle,
                 args: dict[str, Any]) -> None:
        checked = AppArgs(**args)
        self.service = DetectService(checked, analyzer, judge)
        registry = registry_actor(serve.get_replica_context().app_name, checked.stream_orphan_s)
        self.streams = StreamService(checked, registry, streams)

    def __serve_build_asgi_app__(self) -> Any:
        return create_api(self.service, self.streams)


def build_app(args: dict[str, Any] | AppArgs) -> Application:
    """The whole app for ``args`` (checked by :class:`AppArgs` here, so a bad config fails at deploy time
    with the field's name, not inside a replica). Deployment options come from the code's defaults and
    ``serve_config.yaml``'s ``deployments`` section."""
    return compose(args)


def compose(args: dict[str, Any] | AppArgs, api: dict[str, Any] | None = None,
            analyzer: dict[str, Any] | None = None, judge: dict[str, Any] | None = None,
            streams: dict[str, Any] | None = None) -> Application:
    """:func:`build_app` with deployment options (``.options(**...)``: resources, queue limits) set in code,
    as ``serve_config.yaml`` sets them for ``serve run``; ``dualvad serve`` and the tests use it."""
    checked = args if isinstance(args, AppArgs) else AppArgs.model_validate(args)
    plain = checked.model_dump()
    analyzers = Analyzer.options(**(analyzer or {})).bind(plain)
    judges = Judge.options(**(judge or {})).bind(plain)
    followers = Streams.options(**(streams or {})).bind(judges, plain)
    return Api.options(**(api or {})).bind(analyzers, judges, followers, plain)
