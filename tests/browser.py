"""Headless Chromium for the report tests: render a page, read its DOM, take a screenshot.

Debian's ``chromium`` (``.ci/run`` installs it); where it is missing the tests that need it skip with
:data:`MISSING`, which says how to install it.
"""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
from PIL import Image

CHROMIUM = next((shutil.which(name) for name in ("chromium", "chromium-browser") if shutil.which(name)), None)
MISSING = ("chromium is missing: install it (Debian/Ubuntu: `apt-get install chromium`) "
           "to run the browser tests")


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess:
    # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               f"--user-data-dir={profile}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)


class PageImages(HTMLParser):
    """Every <img>'s attributes, and the text of the page."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[dict[str, str]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs))

    def handle_data(self, data):
        self.text.append(data)


def _parse(page: str) -> PageImages:
    parser = PageImages()
    parser.feed(page)
    return parser


def parse(page: str) -> PageImages:
    """Every ``<img>`` of an HTML page (its attributes) and its text."""
    parser = PageImages()
    parser.feed(page)
    return parser


def render(html_file: Path, profile: Path, shot: Path) -> PageImages:
    """Load ``html_file`` in headless Chromium: returns the rendered DOM's images and text; writes a
    1200 x 2000 screenshot to ``shot`` and checks it is not blank."""
    url = html_file.resolve().as_uri()
    dom = parse(chromium("--dump-dom", url, profile=profile).stdout)
    chromium(f"--screenshot={shot}", "--window-size=1200,2000", url, profile=profile)
    with Image.open(shot) as image:
        assert image.size == (1200, 2000)
        pixels = np.asarray(image.convert("L"), dtype=np.float64)
    assert pixels.std() > 5 and (pixels < 250).mean() > 0.01, "the screenshot is blank"
    return dom
