"""A kept sample's KEY.json: its audit row less the captions, one polars call a shard."""

from __future__ import annotations

import json
import math

import pyarrow as pa

from pairsift.models.config import OutputConfig
from pairsift.pipeline.kept_samples import KeptImage, kept_samples, sample_jsons


def _audit() -> pa.Table:
    return pa.table({
        "key": ["a", "b", "c"],
        "index": [0, 1, 2],
        "caption": ["un café", "two", None],
        "caption_pt": ["um café", None, "três"],
        "label": ["clean", "hard", "clean"],
        "p_clean": [0.123456789, float("nan"), 1e-9],
        "loss": [float("inf"), 2.5, -0.0],
        "width": [64, 32, 16],
        "error": pa.array([None, None, None], pa.string()),
        "note": ["ü\"q", "x", "y"],
    })


def test_the_json_is_the_row_less_captions_with_clean_floats() -> None:
    docs = [json.loads(d) for d in sample_jsons(_audit())]
    assert list(docs[0]) == sorted(docs[0])  # sorted keys
    assert set(docs[0]) == {"key", "label", "p_clean", "loss", "width", "error", "note"}
    assert docs[0]["p_clean"] == round(0.123456789, 6) and docs[0]["loss"] is None  # inf
    assert docs[1]["p_clean"] is None and docs[2]["p_clean"] == 0.0 and docs[0]["note"] == "ü\"q"
    assert "ü" in sample_jsons(_audit())[0].decode("utf-8")  # UTF-8, not \\u escapes
    assert all(not (isinstance(v, float) and math.isnan(v)) for d in docs for v in d.values())


def test_kept_samples_follow_the_kept_order_with_their_files() -> None:
    kept = [KeptImage(2, b"img-c", "jpeg"), KeptImage(0, b"img-a", None)]
    samples, curated = kept_samples(_audit(), kept, ["pt"], OutputConfig())
    assert [s.key for s in samples] == ["c", "a"]
    assert samples[0].files["jpg"] == b"img-c" and samples[0].files["txt"] == b""
    assert samples[0].files["pt.txt"] == "três".encode() and "pt.txt" in samples[1].files
    assert curated.column("key").to_pylist() == ["c", "a"] and "index" not in curated.column_names
    without, _ = kept_samples(_audit(), kept, ["pt"], OutputConfig(write_translations="none"))
    assert "pt.txt" not in without[1].files


def test_a_translation_ships_only_when_its_own_label_is_kept() -> None:
    audit = _audit().append_column("label_pt", pa.array(["noisy", None, "hard"], pa.string()))
    audit = audit.append_column("translations_dropped", pa.array(
        ["pt: translation labelled noisy (p_clean_pt 0.010)", None, None], pa.string()))
    kept = [KeptImage(0, b"a", "png"), KeptImage(2, b"c", "png")]
    samples, _ = kept_samples(audit, kept, ["pt"], OutputConfig())
    assert "pt.txt" not in samples[0].files and samples[1].files["pt.txt"] == "três".encode()
    doc = json.loads(samples[0].files["json"])
    assert doc["label_pt"] == "noisy" and doc["translations_dropped"].startswith("pt: ")
    every, _ = kept_samples(audit, kept, ["pt"], OutputConfig(write_translations="all"))
    assert every[0].files["pt.txt"] == "um café".encode()
