"""Typed configs: dataclasses with defaults, ``--set key=value`` overrides, validation before any work.

Nested dataclasses are addressed with dotted keys (``mask.strategy=random``). Values are coerced to the
field's annotated type (bool, int, float, str, ``Literal`` choices, ``X | None``, tuples); an unknown key or a
value of the wrong type raises :class:`ConfigError` naming the valid keys or choices.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, Union

from detbench.errors import ConfigError


def parse_set_args(items: list[str] | None) -> dict[str, str]:
    """Parse ``["a=1", "b.c=x"]`` into a dict, rejecting malformed items and repeated keys.

    Args:
        items: the ``--set`` arguments (None: none).

    Returns:
        Key -> value (both stripped; values stay strings).

    Raises:
        ConfigError: an item without ``=`` or a key, or a key given twice.
    """
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        if key in out:
            raise ConfigError(f"--set {key} given twice")
        out[key] = value.strip()
    return out


def field_paths(cls_or_obj: Any, prefix: str = "") -> dict[str, Any]:
    """Every settable dotted key of a config dataclass, mapped to its type annotation.

    Args:
        cls_or_obj: a config dataclass or an instance of one.
        prefix: prepended to every key (used for nested dataclasses).

    Returns:
        Dotted key -> type (nested dataclasses are expanded, not listed themselves).
    """
    cls = cls_or_obj if isinstance(cls_or_obj, type) else type(cls_or_obj)
    hints = typing.get_type_hints(cls)
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            out.update(field_paths(tp, prefix + f.name + "."))
        else:
            out[prefix + f.name] = tp
    return out


def apply_overrides(config: Any, overrides: Mapping[str, Any]) -> Any:
    """A copy of ``config`` with dotted-key overrides applied, coerced and validated.

    Args:
        config: a config dataclass instance.
        overrides: dotted key -> value (a CLI string or an already typed value).

    Returns:
        The new config (each changed dataclass's ``validate()`` is called when it has one).

    Raises:
        ConfigError: an unknown key, a value of the wrong type, or a failed validation.
    """
    valid = field_paths(config)
    for key in overrides:
        if key not in valid:
            raise ConfigError(f"unknown config key {key!r}. Valid keys: {', '.join(sorted(valid))}")
    return _replace(config, dict(overrides), valid, "")


def _replace(obj: Any, overrides: dict[str, Any], valid: dict[str, Any], prefix: str) -> Any:
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        if not f.init:
            continue
        key = prefix + f.name
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            nested = {k: v for k, v in overrides.items() if k.startswith(key + ".")}
            if nested:
                changes[f.name] = _replace(value, nested, valid, key + ".")
        elif key in overrides:
            changes[f.name] = coerce(overrides[key], valid[key], key)
    new = dataclasses.replace(obj, **changes)
    validate = getattr(new, "validate", None)
    if callable(validate):
        validate()
    return new


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def coerce(value: Any, tp: Any, key: str = "value") -> Any:
    """Coerce a CLI string (or an already typed value) to the annotated type ``tp``.

    Args:
        value: the value to coerce.
        tp: the annotation: bool, int, float, str, Any, a ``Literal``, a union (``X | None``) or a tuple.
        key: the setting's name, for messages.

    Returns:
        The typed value (``none``/``null``/empty gives None for an optional type).

    Raises:
        ConfigError: the value does not fit the type, or the type is not supported.
    """
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (Union, types.UnionType):
        if type(None) in args and (value is None or str(value).lower() in {"none", "null", ""}):
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return coerce(value, arg, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError("; ".join(errors))
    if origin is Literal:
        for choice in args:
            if str(value) == str(choice):
                return choice
        raise ConfigError(f"{key} must be one of {', '.join(map(str, args))}; got {value!r}")
    if origin is tuple:
        items = value if isinstance(value, (list, tuple)) else [v for v in str(value).split(",") if v]
        inner = args[0] if args else str
        return tuple(coerce(v, inner, key) for v in items)
    if tp is bool:
        if isinstance(value, bool):
            return value
        text = str(value).lower()
        if text in _TRUE | _FALSE:
            return text in _TRUE
        raise ConfigError(f"{key} must be true or false; got {value!r}")
    if tp in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"{key} must be {tp.__name__}; got {value!r}")
        try:
            number = float(value) if tp is float else int(str(value), 0) if isinstance(value, str) else value
            if tp is int and not float(number).is_integer():
                raise ValueError
            number = tp(number)
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(f"{key} must be {tp.__name__}; got {value!r}") from None
        if not math.isfinite(number):
            raise ConfigError(f"{key} must be a finite number; got {value!r}")
        return number
    if tp is str:
        return str(value)
    if tp is Any:
        return value
    raise ConfigError(f"{key}: unsupported config type {tp!r}")


def to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a (nested) config dataclass.

    Args:
        config: a config dataclass instance.

    Returns:
        ``dataclasses.asdict(config)``.
    """
    return dataclasses.asdict(config)
