"""The one validation system (pydantic v2) for the config sections, the detector's options and the serve
arguments.

Each config section (``dualvad.video.sampling.SampleConfig`` ...) is a pydantic dataclass made by
:func:`config_section`: still a real dataclass (``dataclasses.fields``, ``replace``, ``asdict`` work), with
its ranges written as ``Annotated[int, Field(ge=1)]``, its choices as ``Literal[...]`` and its cross-field
rules as validators that raise :func:`rule_error`. Sections are strict (:data:`SECTION`): unknown keys are
refused, a string is never read as a number, a bool never as an int or a float, ``None`` only where the
type says ``| None``; an int is accepted where a float is expected. However a section is built (by
:func:`dualvad.config.load_config`, by ``dataclasses.replace`` or by a test), pydantic's
``ValidationError`` becomes a :class:`~dualvad.errors.SettingError` (a ``ValueError``) that names the key,
the rule and the value: ``config key 'sample.budget' must be >= 1, got -3``.

The HTTP API's models and the serve arguments use :data:`FORBID_EXTRA` (lax: form fields arrive as
strings), so "an unknown field is an error" is defined once for both.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Sequence
from typing import Any, Union

import pydantic.dataclasses
from pydantic import ConfigDict, ValidationError
from pydantic_core import PydanticCustomError

from dualvad.errors import ConfigError, SettingError

#: Every pydantic model of the project: a misspelt field is an error, never a silent default.
FORBID_EXTRA = ConfigDict(extra="forbid")
#: The config sections: also strict types (see the module docstring).
SECTION = ConfigDict(FORBID_EXTRA, strict=True)

RULE = "config_rule"  # the pydantic error type of :func:`rule_error`

# pydantic's error types -> the rule's words (the bound comes from the error's context)
_BOUNDS = {"greater_than_equal": ("ge", ">="), "greater_than": ("gt", ">"), "less_than_equal": ("le", "<="),
           "less_than": ("lt", "<")}
_TYPES = {"int_type": "int", "float_type": "float", "string_type": "str", "bool_type": "bool",
          "list_type": "list", "dataclass_type": "a mapping"}

_Section = typing.TypeVar("_Section", bound=type)


@typing.dataclass_transform(field_specifiers=(dataclasses.field, pydantic.Field))
def config_section(cls: _Section | None = None, *, frozen: bool = False) -> Any:
    """Make ``cls`` a strict pydantic dataclass whose construction raises :class:`SettingError` (or
    :class:`ConfigError` for an unknown key) instead of pydantic's ``ValidationError``."""
    def make(cls: _Section) -> _Section:
        section = pydantic.dataclasses.dataclass(cls, config=SECTION, frozen=frozen)
        validate = section.__init__

        @functools.wraps(validate)
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            try:
                validate(self, *args, **kwargs)
            except ValidationError as error:
                raise config_error(error, type(self)) from None

        section.__init__ = __init__  # type: ignore[misc]
        return section

    return make if cls is None else make(cls)


def rule_error(field: str, detail: str) -> PydanticCustomError:
    """A cross-field rule broken by ``field`` (raise it from a ``model_validator``); ``detail`` is the
    message tail: ``must be divisible by transformer_heads (4), got 30``."""
    return PydanticCustomError(RULE, "{detail}", {"field": field, "detail": detail})


def one_of(value: Any, choices: Sequence[Any]) -> Any:
    """``value`` when it is one of ``choices`` (for choices known only at run time, e.g. corpus splits);
    else an error for the field the calling ``field_validator`` checks."""
    if not any(value == choice and type(value) is type(choice) for choice in choices):
        raise PydanticCustomError(RULE, "{detail}", {"detail": _choice_detail(value, choices)})
    return value


def config_error(error: ValidationError, root: type) -> ConfigError:
    """The first problem of ``error`` (raised validating dataclass ``root``) in the project's words."""
    problem = error.errors(include_url=False)[0]
    ctx, value, kind = problem.get("ctx") or {}, problem["input"], problem["type"]
    if kind in ("unexpected_keyword_argument", "extra_forbidden"):
        loc, section = _resolve(root, problem["loc"][:-1])
        valid = ", ".join(sorted(f.name for f in dataclasses.fields(section)))
        return ConfigError(f"unknown config key {_key((*loc, problem['loc'][-1]))!r}; valid keys under "
                           f"{_key(loc) or 'the top level'}: {valid}")
    # a cross-field rule names the field it blames
    loc, hint = _resolve(root, (*problem["loc"], ctx["field"]) if "field" in ctx else problem["loc"])
    return SettingError(_key(loc), _detail(kind, ctx, value, problem["msg"], hint))


def _detail(kind: str, ctx: dict[str, Any], value: Any, message: str, hint: Any) -> str:
    """The message tail of one pydantic problem: ``must be >= 1, got -3``, ``expects int, got str '3'``."""
    if kind == RULE:
        return ctx["detail"]
    if kind == "literal_error" and choices_of(hint):
        return _choice_detail(value, choices_of(hint))
    if kind == "dataclass_exact_type":  # a section built in Python takes a section, not a mapping
        return f"expects a {ctx['class_name']}, got {type(value).__name__} {value!r}"
    if kind in _BOUNDS:
        name, words = _BOUNDS[kind]
        bound = ctx[name]
        if isinstance(bound, float) and type(value) is int:  # a float field: show the value as read
            value = float(value)
        return f"must be {words} {bound:g}, got {value!r}"
    if kind == "multiple_of":
        return f"must be a multiple of {ctx['multiple_of']:g}, got {value!r}"
    if kind in _TYPES:
        return f"expects {_TYPES[kind]}, got {type(value).__name__} {value!r}"
    return f"is not valid ({message}), got {value!r}"


def _choice_detail(value: Any, choices: Sequence[Any]) -> str:
    return f"must be one of {', '.join(repr(choice) for choice in choices)}, got {value!r}"


def _key(loc: Sequence[str | int]) -> str:
    """``('finetune', 'lora_targets', 0)`` -> ``finetune.lora_targets[0]``."""
    key = ""
    for part in loc:
        key += f"[{part}]" if isinstance(part, int) else f".{part}" if key else part
    return key


def _resolve(root: type, loc: Sequence[str | int]) -> tuple[tuple[str | int, ...], Any]:
    """``loc`` (a pydantic error's) with positional arguments named, and the type of the field it reaches
    below dataclass ``root`` (``Annotated`` constraints dropped); ``None`` where it reaches none."""
    names: list[str | int] = []
    hint: Any = root
    for part in loc:
        if dataclasses.is_dataclass(hint):
            fields = dataclasses.fields(hint)
            if isinstance(part, int):  # a positional argument
                part = fields[part].name if part < len(fields) else part
            hint = _non_none(typing.get_type_hints(hint).get(part))  # type: ignore[arg-type]
        else:  # a list item
            hint = typing.get_args(hint)[0] if typing.get_args(hint) else None
        names.append(part)
    return tuple(names), hint


def _non_none(hint: Any) -> Any:
    """``X`` of ``X | None``; any other type as it is."""
    if typing.get_origin(hint) in (Union, types.UnionType):
        options = [option for option in typing.get_args(hint) if option is not type(None)]
        return options[0] if len(options) == 1 else hint
    return hint


def choices_of(hint: Any) -> tuple[Any, ...] | None:
    """The values of a ``Literal`` type (or of ``Literal[...] | None``), ``None`` for any other type."""
    hint = _non_none(hint)
    return typing.get_args(hint) if typing.get_origin(hint) is typing.Literal else None


def field_type(root: type, key: str) -> Any:
    """The type of dotted config key ``key`` (``sample.budget``) below dataclass ``root``."""
    return _resolve(root, key.split("."))[1]
