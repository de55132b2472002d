"""Load a PairsiftConfig from JSON or YAML (safe loading only)."""

from __future__ import annotations

import json

import fsspec
import yaml

from pairsift.models.config import PairsiftConfig


def load_config(path: str | None) -> PairsiftConfig:
    if not path:
        return PairsiftConfig()
    with fsspec.open(path, "r", encoding="utf-8") as handle:
        text = handle.read()
    data = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
    if data is None:
        return PairsiftConfig()
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return PairsiftConfig.from_dict(data)
