"""The runner's settings (the ``stages`` section of the config)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from dualvad.validation import config_section


@config_section
class StagesConfig:
    """What the runner does for every stage."""

    # a per-video stage fails when more videos than this share fail
    max_failure_share: Annotated[float, Field(ge=0, le=1)] = 0.25
    # per-video stages write their finished rows at least every this many videos
    flush_videos: Annotated[int, Field(ge=1)] = 16
    # ... or this many seconds, whichever comes first (not ingest: its workers write whole groups of at most
    # flush_videos videos, the same groups when Ray runs a task again)
    flush_seconds: Annotated[float, Field(gt=0)] = 10.0
