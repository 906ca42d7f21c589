"""The serve tests' one app, shared by every module of tests/serve that needs it (package scope: it starts
once, on the pytest-xdist worker of the shared scored run; tests/serveapp.py has its settings)."""

from __future__ import annotations

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
