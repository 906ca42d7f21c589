"""The stream tests' generated videos, shared by their modules."""

from __future__ import annotations

from pathlib import Path

import pytest

from media import write_stream_videos


@pytest.fixture(scope="session")
def stream_videos(tmp_path_factory) -> dict[int, tuple[Path, tuple[int, int] | None]]:
    """The explosion and the normal video (media.write_stream_videos): index -> (path, event frames)."""
    return write_stream_videos(tmp_path_factory.mktemp("stream-videos"))
