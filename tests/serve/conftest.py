"""The serve tests' one app, shared by every module of tests/serve that needs it (package scope: it starts
once, on the pytest-xdist worker of the shared scored run; tests/serveapp.py has its settings)."""

from __future__ import annotations

from pathlib import Path

import pytest

from serveapp import BUDGET, serve_app, write_media


@pytest.fixture(scope="package")
def media(tmp_path_factory) -> dict:
    """Generated and broken videos under one allowed root (serveapp.write_media)."""
    return write_media(tmp_path_factory.mktemp("serve-media"))


@pytest.fixture(scope="package")
def server(ray_session, evaluated_copy, media):
    """A client of the app (serveapp.serve_app) over the evaluated run and the tiny VLM."""
    config, _, tiny = evaluated_copy
    assert config.sample.budget == BUDGET
    with serve_app(config.run, str(tiny), media["root"]) as client:
        yield client


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests of this folder that do not use the shared app but sit between two that do (test_launch's,
    which start Rays of their own) run after the last that does: the app is up only while it is used."""
    here = Path(__file__).parent
    uses = [index for index, item in enumerate(items) if "server" in getattr(item, "fixturenames", ())]
    if not uses:
        return
    first, last = uses[0], uses[-1]
    between = [item for item in items[first:last] if item.path.parent == here
               and "server" not in getattr(item, "fixturenames", ())]
    if between:
        moved = set(map(id, between))
        kept = [item for item in items if id(item) not in moved]
        at = kept.index(items[last]) + 1
        items[:] = kept[:at] + between + kept[at:]
