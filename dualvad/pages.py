"""The HTML pages' templates: Jinja2 files in ``dualvad/templates`` (package data), rendered with
autoescaping on, so every value a template prints is HTML-escaped unless it is markup already.

- ``base.html`` + ``page.css``: the frame and the style of the self-contained reports (inline CSS, images
  as data URIs, no script, no external resource);
- ``eval_report.html``: the evaluation report (:func:`dualvad.eval.report.write_report`);
- ``detect_report.html``: ``dualvad detect --report`` (:func:`dualvad.batch_detect.write_detect_report`);
- ``macros.html``: ``img`` (an ``<img>`` of bytes given as a data URI) and ``data_table`` (a
  :class:`dualvad.eval.tables.Grid`);
- ``upload.html``: the serve app's upload page (``GET /``); its threshold field starts empty (the run's
  verdict decides unless the user sets one);
- ``stream.html``: a live stream's page (``GET /streams/{id}``): its timeline and events, kept current from
  the stream's Server-Sent Events and JSON endpoints.
"""

from __future__ import annotations

import base64
from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup


def data_uri(data: bytes, mime: str) -> str:
    """``data:<mime>;base64,<data>``: a file embedded in the page (``mime`` e.g. ``image/png``)."""
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


@cache
def environment() -> Environment:
    """The templates' environment, built once per process: autoescaped; an undefined name is an error, not
    an empty string; a block tag's own line break and indentation are not output."""
    env = Environment(loader=PackageLoader("dualvad", "templates"), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                      keep_trailing_newline=True)
    env.filters["data_uri"] = data_uri
    return env


def render(template: str, **context: Any) -> str:
    """The page ``template`` (a file name in ``dualvad/templates``) filled with ``context``."""
    return environment().get_template(template).render(**context)


def macro(template: str, name: str, *args: Any) -> Markup:
    """The output of macro ``name`` of ``template`` called with ``args``: a piece of a page, escaped."""
    return getattr(environment().get_template(template).module, name)(*args)
