"""Headless Chromium for the browser tests: render a page, read its DOM, take a screenshot; or drive a live
page (uploads, clicks) with Playwright on the same system Chromium.

Debian's ``chromium`` (``.ci/run`` installs it); where it is missing the tests that need it skip with
:data:`MISSING`, which says how to install it.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
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
    assert_not_blank(shot)
    return dom


@contextmanager
def live_page() -> Iterator:
    """A Playwright page in the system's headless Chromium (Playwright's own browsers are never
    downloaded), closed afterwards. Callers skip with :data:`MISSING` when :data:`CHROMIUM` is None."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield browser.new_page(viewport={"width": 1200, "height": 1400})
        finally:
            browser.close()


def assert_not_blank(shot: Path) -> None:
    """The PNG at ``shot`` has content: some contrast and some non-white pixels."""
    with Image.open(shot) as image:
        pixels = np.asarray(image.convert("L"), dtype=np.float64)
    assert pixels.std() > 5 and (pixels < 250).mean() > 0.01, "the screenshot is blank"
