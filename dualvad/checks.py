"""Value checks for the component configs (plain Python, no third-party imports).

Each component config (``dualvad.scorer.config``, ``dualvad.video.sampling`` ...) calls these from its
``__post_init__``, so a value out of range is refused wherever the config is built: by
:func:`dualvad.config.load_config`, by ``dataclasses.replace`` or by a test. A failed check raises
:class:`SettingError` with the field's name; the loader prefixes the section, so the message reads
``config key 'sample.budget' must be >= 1, got -3``.
"""

from __future__ import annotations

import functools
import typing
from collections.abc import Sequence
from typing import Any

Number = int | float


class ConfigError(ValueError):
    """A config file, override or value that does not match the schema."""


class SettingError(ConfigError):
    """One config value that breaks its rule; ``key`` is the field's name, or its dotted path once the
    loader knows the section."""

    def __init__(self, key: str, detail: str) -> None:
        super().__init__(f"config key {key!r} {detail}")
        self.key, self.detail = key, detail

    def under(self, prefix: str) -> SettingError:
        """The same error with ``prefix`` (``"sample."``) before the key."""
        return SettingError(prefix + self.key, self.detail)


def choice_detail(value: Any, choices: Sequence[Any]) -> str:
    """The message tail for a value that is not one of ``choices``."""
    return f"must be one of {', '.join(repr(choice) for choice in choices)}, got {value!r}"


def is_choice(value: Any, choices: Sequence[Any]) -> bool:
    """``value`` is one of ``choices`` with the same type (so ``True`` is not the choice ``1``)."""
    return any(value == choice and type(value) is type(choice) for choice in choices)


def check_choices(config: Any) -> None:
    """Every ``Literal[...]``-typed field of dataclass ``config`` holds one of its listed values."""
    for name, choices in _literal_fields(type(config)):
        value = getattr(config, name)
        if not is_choice(value, choices):
            raise SettingError(name, choice_detail(value, choices))


@functools.cache
def _literal_fields(cls: type) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    hints = typing.get_type_hints(cls)
    return tuple((name, typing.get_args(hint)) for name, hint in hints.items()
                 if typing.get_origin(hint) is typing.Literal)


def one_of(config: Any, name: str, choices: Sequence[Any]) -> None:
    """Field ``name`` is one of ``choices`` (for choices defined at run time, e.g. corpus splits)."""
    value = getattr(config, name)
    if not is_choice(value, choices):
        raise SettingError(name, choice_detail(value, tuple(choices)))


def at_least(config: Any, bound: Number, *names: str) -> None:
    """Each field in ``names`` is ``>= bound``; ``None`` (an optional field left unset) passes."""
    _compare(config, names, lambda value: value >= bound, f">= {bound}")


def above(config: Any, bound: Number, *names: str) -> None:
    """Each field in ``names`` is ``> bound``; ``None`` passes."""
    _compare(config, names, lambda value: value > bound, f"> {bound}")


def at_most(config: Any, bound: Number, *names: str) -> None:
    """Each field in ``names`` is ``<= bound``; ``None`` passes."""
    _compare(config, names, lambda value: value <= bound, f"<= {bound}")


def below(config: Any, bound: Number, *names: str) -> None:
    """Each field in ``names`` is ``< bound``; ``None`` passes."""
    _compare(config, names, lambda value: value < bound, f"< {bound}")


def _compare(config: Any, names: Sequence[str], holds: typing.Callable[[Any], bool], rule: str) -> None:
    for name in names:
        value = getattr(config, name)
        if value is not None and not holds(value):
            raise SettingError(name, f"must be {rule}, got {value!r}")


def require(condition: bool, name: str, rule: str, value: Any) -> None:
    """A rule the helpers above do not express: raise for field ``name`` unless ``condition``."""
    if not condition:
        raise SettingError(name, f"must be {rule}, got {value!r}")
