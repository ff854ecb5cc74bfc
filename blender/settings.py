"""Checks every settings dataclass runs when it is built, so a bad option fails before any data loads, naming the
config key, the value and what is allowed (not deep inside torch or numpy an epoch later).

`check_types(settings)` compares each field with its annotation (`int`, `float`, `str`, `bool`, `None`, `list`,
`dict` and unions of them); `require(...)` states one range or choice. A dataclass names its config node in
`CONFIG_KEY` ("trainer", "data", ...), which prefixes every message.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterable
from typing import Any

_NAMES = {
    int: "an integer",
    float: "a number",
    str: "a string",
    bool: "true or false",
    type(None): "null",
    list: "a list",
    dict: "a mapping",
}


class SettingsError(ValueError):
    """An option of the wrong type or outside its range; the message names the key, the value and the fix."""


def _accepts(kind: Any, value: Any) -> bool:
    origin = typing.get_origin(kind) or kind
    if origin in (typing.Union, types.UnionType):
        return any(_accepts(k, value) for k in typing.get_args(kind))
    if origin is typing.Any:
        return True
    if origin is bool:
        return isinstance(value, bool)
    if origin is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is float:  # an integer is a fine float: lr=1 means 1.0
        return isinstance(value, int | float) and not isinstance(value, bool)
    if origin in (list, tuple, typing.Sequence):
        return isinstance(value, list | tuple)
    if origin in (dict, typing.Mapping):
        return isinstance(value, dict)
    if isinstance(origin, type):
        return isinstance(value, origin)
    return True


def _describe(kind: Any) -> str:
    origin = typing.get_origin(kind) or kind
    if origin in (typing.Union, types.UnionType):
        return " or ".join(dict.fromkeys(_describe(k) for k in typing.get_args(kind)))
    return _NAMES.get(origin, getattr(origin, "__name__", str(origin)))


def key_of(settings: Any, name: str) -> str:
    prefix = getattr(settings, "CONFIG_KEY", "")
    return f"{prefix}.{name}" if prefix else name


def check_types(settings: Any) -> None:
    """Every field of a dataclass instance holds a value of its annotated type."""
    hints = typing.get_type_hints(type(settings))
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if not _accepts(hints[f.name], value):
            raise SettingsError(f"{key_of(settings, f.name)}={value!r}: expected {_describe(hints[f.name])}")


def require(settings: Any, name: str, ok: bool, allowed: str) -> None:
    """Fail naming `<CONFIG_KEY>.<name>`, its value and `allowed` unless `ok`."""
    if not ok:
        raise SettingsError(f"{key_of(settings, name)}={getattr(settings, name)!r}: {allowed}")


def require_choice(settings: Any, name: str, choices: Iterable[Any]) -> None:
    choices = list(choices)
    require(
        settings, name, getattr(settings, name) in choices, "choose one of " + ", ".join(map(str, choices))
    )


def require_positive(settings: Any, *names: str, allow_none: bool = False, minimum: float = 1) -> None:
    for name in names:
        value = getattr(settings, name)
        if value is None and allow_none:
            continue
        require(settings, name, value is not None and value >= minimum, f"must be {minimum:g} or more")
