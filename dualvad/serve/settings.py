"""The serve app's arguments (``build_app(args)``), typed and checked by pydantic before any replica starts.

Nothing here imports Ray: the CLI and the tests build and validate these without a cluster.
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel, Field, field_validator

from dualvad.config import DEMO_RUN
from dualvad.stream.config import StreamConfig
from dualvad.validation import FORBID_EXTRA

STREAM_SCHEMES = ("rtsp", "rtsps", "http", "https")


class AppArgs(BaseModel):
    """What ``serve run serve_config.yaml`` passes as ``args`` (and ``dualvad serve`` builds from flags).

    ``run``: the run directory whose scorer (and fine-tuned VLM) are served; ``vlm``: a VLM folder or hub id
    instead of ``RUN/finetune/final``. Limits are enforced by the Api before any work reaches a replica.
    """

    model_config = FORBID_EXTRA  # a misspelt argument is an error, not a silent default

    run: str = Field(description="run directory (local path or pyarrow URI) holding the scorer and VLM")
    vlm: str | None = Field(None, description="VLM folder or hub id; default RUN/finetune/final")
    device: str = Field("cpu", description="torch device of the Judge's VLM (cuda on GPU replicas)")
    vlm_batch_size: int = Field(8, ge=1, description="frames per VLM forward pass")
    max_new_tokens: int = Field(24, ge=1, description="tokens generated per clip explanation")
    allowed_roots: list[str] = Field(default_factory=list,
                                     description="local folders or URI prefixes a JSON `uri` may point into")
    max_upload_bytes: int = Field(200 * 2**20, ge=1, description="largest accepted upload (413 above)")
    max_duration_s: float = Field(600.0, gt=0, description="longest accepted video (422 above)")
    request_timeout_s: float = Field(120.0, gt=0,
                                     description="server-side deadline of one detection (504 past it); "
                                                 "a client header cannot raise it")
    read_timeout_s: float = Field(30.0, gt=0,
                                  description="longest wait for a request's whole body (408 past it): a "
                                              "client that stops sending mid-upload frees its slot")
    max_batch_size: int = Field(8, ge=1, description="requests the Judge batches together at most")
    batch_wait_timeout_s: float = Field(0.05, ge=0, description="how long the Judge waits to fill a batch")
    retry_after_s: int = Field(2, ge=1, description="the Retry-After of a 503 when the queue is full")
    allowed_stream_schemes: list[str] = Field(list(STREAM_SCHEMES),
                                              description="URL schemes POST /v1/streams accepts (403 others)")
    allowed_stream_hosts: list[str] = Field(
        default_factory=list, description="hosts POST /v1/streams accepts: names or IPs (exact), IP networks "
                                          "(10.0.0.0/8), or * for any; default none: every stream host is "
                                          "opt-in (`dualvad serve --allow-stream-host`)")
    max_streams: int = Field(16, ge=1, description="streams the app follows at most (409 past it)")
    max_streams_per_replica: int = Field(8, ge=1, description="streams one Streams replica follows at most; "
                                                              "the autoscaler adds replicas for the rest")
    stream_orphan_s: float = Field(10.0, gt=0, description="a Streams replica silent this long is taken for "
                                                           "dead and its streams re-opened elsewhere")
    stream: dict[str, Any] = Field(default_factory=dict,
                                   description="stream.* settings of the streams (StreamConfig's keys)")

    @field_validator("stream")
    @classmethod
    def _check_stream(cls, settings: dict[str, Any]) -> dict[str, Any]:
        """Checked here, so a bad key fails at deploy time, not inside a replica."""
        StreamConfig(**settings)
        return settings

    @field_validator("allowed_stream_schemes")
    @classmethod
    def _lower_schemes(cls, schemes: list[str]) -> list[str]:
        return [scheme.lower() for scheme in schemes]

    @field_validator("allowed_roots")
    @classmethod
    def _normalise_roots(cls, roots: list[str]) -> list[str]:
        """Local roots become real absolute paths (symlinks resolved) so prefix checks cannot be fooled."""
        return [root if "://" in root else os.path.realpath(root) for root in roots]


def corpus_roots(run: str) -> list[str]:
    """The folder that holds every video the run ingested (their common parent, from ``RUN/segments``), as
    the one allowed root of ``dualvad serve`` when no ``--allowed-root`` is given; ``[]`` when the run has
    no segments or its videos are not local files."""
    from dualvad import paths
    from dualvad import schema as S
    from dualvad.rundir import open_run
    from dualvad.stages.records import read_input

    table = read_input(open_run(run), paths.SEGMENTS, columns=[S.VIDEO_PATH])
    if table is None:
        return []
    local = [path for path in set(table[S.VIDEO_PATH].to_pylist()) if "://" not in path]
    folders = {os.path.dirname(os.path.realpath(path)) for path in local}
    return [os.path.commonpath(sorted(folders))] if folders else []


def default_run() -> str:
    """The demo run when it exists (``dualvad serve`` without ``--run``)."""
    if not os.path.isdir(DEMO_RUN):
        raise FileNotFoundError(f"no --run given and {DEMO_RUN} does not exist: run `make demo` first, or "
                                "pass --run RUN")
    return DEMO_RUN
