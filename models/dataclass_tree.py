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
            kwargs[name] = value
    return cls(**kwargs)


def _dataclass_in(hint: Any) -> type | None:
    """The dataclass a field's type names (``Recipe`` in ``Recipe | None``), if any."""
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return hint
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        for arg in typing.get_args(hint):
            if isinstance(arg, type) and dataclasses.is_dataclass(arg):
                return arg
    return None
