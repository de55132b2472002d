"""The defaults documented in docs/config.md are the code's defaults and load as written."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from pairsift.models.config import PairsiftConfig
from pairsift.pipeline.config_io import load_config

DOC = Path(__file__).resolve().parents[2] / "docs" / "config.md"


def test_documented_defaults_load_and_equal_the_code_defaults(tmp_path: Path) -> None:
    block = re.search(r"```yaml\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert block is not None, "docs/config.md lost its defaults block"
    path = tmp_path / "defaults.yaml"
    path.write_text(block.group(1), encoding="utf-8")
    # every value keeps its type through YAML (a bare 1e-06 would load as a string)
    assert load_config(str(path)).to_dict() == PairsiftConfig().to_dict()
    # and every run option is in the block: a missing one would load as its default unseen
    run_keys = _keys({k: v for k, v in PairsiftConfig().to_dict().items() if k != "method"})
    assert _keys(yaml.safe_load(block.group(1))) == run_keys
    assert len([k for k in run_keys if "." in k or k in ("recipe", "seed", "dedup")]) <= 30  # 25 + the caption read cap + a table's three columns + torch threads


def _keys(tree: dict, prefix: str = "") -> set[str]:
    out: set[str] = set()
    for key, value in tree.items():
        out.add(prefix + key)
        if isinstance(value, dict):
            out |= _keys(value, f"{prefix}{key}.")
    return out


def test_config_mistakes_are_one_clear_line(tmp_path: Path) -> None:
    import pytest

    wrong_type = tmp_path / "t.yaml"
    wrong_type.write_text("limits:\n  max_image_bytes: abc\n")
    with pytest.raises(ValueError, match="limits.max_image_bytes must be int, got 'abc'"):
        load_config(str(wrong_type))
    broken = tmp_path / "b.yaml"
    broken.write_text("limits: [\n")
    with pytest.raises(ValueError, match=r"b.yaml: not valid YAML \(line 2"):
        load_config(str(broken))
    with pytest.raises(ValueError, match="config file not found"):
        load_config(str(tmp_path / "none.yaml"))
