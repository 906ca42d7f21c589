"""A stage's settings: the config sections that change its result, named by their dotted keys
(``sample.budget``) in records, plans and each output's ``config.yaml``."""

from __future__ import annotations

import dataclasses
import textwrap
from typing import Any

import yaml

from dualvad import __version__
from dualvad.stages.records import as_recorded


class Section(dict):
    """A config section's settings as :func:`section` returns them: a plain dict (hashed and recorded as
    one) that remembers the section's type, so that the runner can name its keys (``sample.budget``)."""

    def __init__(self, values: dict[str, Any], of: type) -> None:
        super().__init__(values)
        self.of = of


def section(config: Any, *leave_out: str) -> Section:
    """A config section as a dict, without the fields that do not change a stage's result (workers,
    threads ...)."""
    values = dataclasses.asdict(config)
    for name in leave_out:
        values.pop(name)
    return Section(values, type(config))


def settings_by_key(settings: dict[str, Any], effective: Any = None,
                    like: dict[str, Any] | None = None) -> dict[str, Any]:
    """``settings`` flattened to dotted keys: a :class:`Section`'s keys are named under the field of the
    config ``effective`` that holds its type (``sample.budget``), nested dicts under their key, other keys
    keep their own name. ``like``: the settings whose sections name the keys (default ``settings``; a
    record read back holds plain dicts)."""
    names = _section_names(effective)
    like = settings if like is None else like
    prefix = names.get(like.of) if isinstance(like, Section) else None
    flat: dict[str, Any] = {}
    for key, value in settings.items():
        inner = like.get(key)
        label = names.get(inner.of, key) if isinstance(inner, Section) else key
        _flatten(label if prefix is None else f"{prefix}.{label}", value, flat)
    return flat


def _section_names(effective: Any) -> dict[type, str]:
    """Section type -> its key in the top-level config (each section type appears once there)."""
    if not dataclasses.is_dataclass(effective):
        return {}
    return {type(getattr(effective, f.name)): f.name for f in dataclasses.fields(effective)
            if dataclasses.is_dataclass(getattr(effective, f.name))}


def _flatten(label: str, value: Any, flat: dict[str, Any]) -> None:
    if isinstance(value, dict) and value:
        for key, inner in value.items():
            _flatten(f"{label}.{key}", inner, flat)
    else:
        flat[label] = value


def config_text(record: dict[str, Any], settings: dict[str, Any], effective: Any) -> str:
    """``config.yaml`` of a stage output: the whole effective config (loadable with ``--config``), headed
    by comments naming the stage, its fingerprint and the keys that fingerprint covers."""
    stage, covered = record["stage"], settings_by_key(settings, effective)
    values = dataclasses.asdict(effective) if dataclasses.is_dataclass(effective) else settings
    inputs = ", ".join(record["inputs"]) or "none"
    header = [f"The effective config `dualvad {stage}` ran with (dualvad {__version__}, finished "
              f"{record['finished']}); `--config` this file to run it again with the same settings.",
              f"Its fingerprint {record['fingerprint']} covers its inputs ({inputs}) and these keys, so "
              f"changing any of them redoes the stage: {', '.join(covered) or 'none'}. "
              "The other keys did not change this output."]
    comments = "".join(textwrap.fill(line, 108, initial_indent="# ", subsequent_indent="# ",
                                     break_long_words=False, break_on_hyphens=False) + "\n"
                       for line in header)
    return comments + yaml.safe_dump(as_recorded(values), sort_keys=False)
