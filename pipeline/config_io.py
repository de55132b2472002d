"""Load a PairsiftConfig from JSON or YAML (safe loading only)."""

from __future__ import annotations

import json

import fsspec
import yaml

from pairsift.models.config import PairsiftConfig


def load_config(path: str | None) -> PairsiftConfig:
    if not path:
        return PairsiftConfig()
    try:
        with fsspec.open(path, "r", encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        raise ValueError(f"config file not found: {path}") from None
    try:
        data = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ValueError(f"{path}: not valid YAML ({where}{getattr(exc, 'problem', None) or exc})") from None
    if data is None:
        return PairsiftConfig()
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return PairsiftConfig.from_dict(data)
