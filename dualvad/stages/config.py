"""The runner's settings (the ``stages`` section of the config)."""

from __future__ import annotations

from dataclasses import dataclass

from dualvad.checks import above, at_least, at_most


@dataclass
class StagesConfig:
    """What the runner does for every stage."""

    max_failure_share: float = 0.25  # a per-video stage fails when more videos than this share fail
    flush_videos: int = 16  # per-video stages write their finished rows at least every this many videos
    # ... or this many seconds, whichever comes first (not ingest: its workers write whole groups of at most
    # flush_videos videos, the same groups when Ray runs a task again)
    flush_seconds: float = 10.0

    def __post_init__(self) -> None:
        at_least(self, 0, "max_failure_share")
        at_most(self, 1, "max_failure_share")
        at_least(self, 1, "flush_videos")
        above(self, 0, "flush_seconds")
