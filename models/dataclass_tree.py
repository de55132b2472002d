"""Dataclass trees from plain dicts (config and recipe files), with errors people can read."""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any


def build_dataclass(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    """Recursively build a dataclass tree from a dict. An unknown key is an error that names
    it by its full dotted path and suggests the closest valid one."""
    if not isinstance(data, dict):
        raise ValueError(f"config section {prefix.rstrip('.') or 'root'!r} must be a mapping, "
                         f"got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for name in sorted(set(data) - set(fields)):
        close = difflib.get_close_matches(name, list(fields), n=1)
        hint = f"; did you mean {prefix}{close[0]}?" if close else ""
        raise ValueError(f"unknown config key {prefix}{name}{hint} "
                         f"(valid here: {', '.join(sorted(fields))})")
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        nested = _dataclass_in(hints[name])
        if nested is not None and isinstance(value, dict):
            kwargs[name] = build_dataclass(nested, value, prefix=f"{prefix}{name}.")
        else:
            _check_type(f"{prefix}{name}", hints[name], value)
            kwargs[name] = value
    return cls(**kwargs)


_SCALARS = (bool, int, float, str)


def _scalar_types(hint: Any) -> tuple[list[type], bool] | None:
    """The scalar types a field takes and whether None is allowed, or None where the field is
    not a plain scalar (lists, dicts, dataclasses are checked where they are used)."""
    origin = typing.get_origin(hint)
    if origin is not None and origin is not typing.Union and not isinstance(hint, types.UnionType):
        return None
    allowed = [hint] if isinstance(hint, type) else [a for a in typing.get_args(hint) if isinstance(a, type)]
    optional = type(None) in allowed
    scalars = [a for a in allowed if a is not type(None)]
    return (scalars, optional) if scalars and all(a in _SCALARS for a in scalars) else None


def _check_type(key: str, hint: Any, value: Any) -> None:
    """A scalar setting of the wrong type is an error naming its key (an int where a float
    is wanted is fine; a bool is not a number)."""
    found = _scalar_types(hint)
    if found is None:
        return
    scalars, optional = found
    as_float = float in scalars and isinstance(value, int) and not isinstance(value, bool)
    if (value is None and optional) or as_float or type(value) in scalars:
        return
    wanted = " or ".join(a.__name__ for a in scalars)
    raise ValueError(f"config key {key} must be {wanted}, got {value!r}")


def _dataclass_in(hint: Any) -> type | None:
    """The dataclass a field's type names (``Recipe`` in ``Recipe | None``), if any."""
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return hint
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        for arg in typing.get_args(hint):
            if isinstance(arg, type) and dataclasses.is_dataclass(arg):
                return arg
    return None
