"""The HTML templates: autoescaped, strict about undefined names, shipped as package data."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

import jinja2
import pytest

import dualvad
from dualvad.pages import data_uri, environment, render

ROOT = Path(__file__).resolve().parents[1]


def test_data_uri_is_base64_of_the_bytes():
    assert data_uri(b"\x89PNG", "image/png") == "data:image/png;base64,iVBORw=="


def test_every_template_escapes_what_it_prints():
    assert environment().autoescape is True
    page = render("base.html", title="<script>alert('x')</script> & co")
    assert "<script>" not in page
    assert "<title>&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; co</title>" in page


def test_an_undefined_name_is_an_error_not_an_empty_string():
    with pytest.raises(jinja2.UndefinedError, match="title"):
        render("base.html")


def test_the_package_data_ships_every_template():
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    folder = Path(dualvad.__file__).parent
    files = sorted(str(path.relative_to(folder)) for path in (folder / "templates").iterdir())
    assert {"base.html", "page.css", "macros.html", "eval_report.html", "detect_report.html",
            "upload.html"} <= {Path(name).name for name in files}
    assert [name for name in files if not any(fnmatch.fnmatch(name, p) for p in patterns["dualvad"])] == []
