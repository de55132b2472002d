"""TranslateCaptions on Beam's FnApiRunner with the offline backends."""

from __future__ import annotations

import pickle
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.testing.util import assert_that

from pairsift.models.config import TranslateConfig
from pairsift.models.records import PairSample
from pairsift.models.translation.factory import apertium_available
from pairsift.models.translation.langid import detect_language
from pairsift.transforms.translate import TranslateCaptions, identifier_languages

pytestmark = pytest.mark.skipif(
    not apertium_available(), reason="needs apt-get install apertium apertium-eng-spa"
)


def _samples() -> list[PairSample]:
    return [
        PairSample("en1", "s0", 0, caption="A small brown dog runs through the green park."),
        PairSample("en2", "s0", 1, caption="The children are playing football in the garden."),
        PairSample("pt1", "s0", 2, caption="Um pequeno cachorro marrom corre pelo parque verde."),
        PairSample(
            "kept",
            "s0",
            3,
            caption="A red car is parked near the house.",
            captions={"pt": "Um carro."},
        ),
        PairSample("bad", "s0", 4, caption=None, error_status="read_error", error="unsafe path"),
    ]


def _dump(sample: PairSample, directory: str) -> PairSample:
    # The runner works on copies: results come back through files.
    (Path(directory) / f"{sample.key}.pkl").write_bytes(pickle.dumps(sample))
    return sample


def _run(cfg: TranslateConfig, out_dir: Path) -> tuple[dict[str, PairSample], dict[str, int]]:
    out_dir.mkdir(parents=True, exist_ok=True)

    def check(samples: list[PairSample]) -> None:
        keys = sorted(s.key for s in samples)
        assert keys == ["bad", "en1", "en2", "kept", "pt1"], keys  # none dropped or repeated

    pipeline = beam.Pipeline(runner="FnApiRunner")
    out = (
        pipeline | beam.Create(_samples()) | TranslateCaptions(cfg) | beam.Map(_dump, str(out_dir))
    )
    assert_that(out, check)
    result = pipeline.run()
    result.wait_until_finish()
    counters = {
        c.key.metric.name: c.committed
        for c in result.metrics().query(MetricsFilter().with_namespace("translate"))["counters"]
    }
    samples = {p.stem: pickle.loads(p.read_bytes()) for p in out_dir.glob("*.pkl")}
    return samples, counters


def test_translates_copies_keeps_and_counts(tmp_path: Path) -> None:
    cfg = TranslateConfig(
        target_langs=["pt", "es", "de"], backend="auto", batch_size=3, cache_dir=str(tmp_path)
    )
    samples, counters = _run(cfg, tmp_path / "first")
    en1, pt1, kept, bad = samples["en1"], samples["pt1"], samples["kept"], samples["bad"]
    assert en1.language == "en" and pt1.language == "pt"
    assert detect_language(en1.captions["pt"]) == "pt"
    assert detect_language(en1.captions["es"]) == "es"
    assert pt1.captions["pt"] == pt1.caption  # already Portuguese: copied
    assert kept.captions["pt"] == "Um carro."  # carried translation kept
    # No offline backend for English -> German: the pairs continue, with the reason.
    assert "de" not in en1.captions and "de: no offline backend" in en1.meta["translation_error"]
    assert bad.language == "und" and not bad.captions and bad.error_status == "read_error"
    assert counters["copied"] == 1 and counters["kept"] == 1 and counters["skipped"] == 1
    assert counters["translated"] >= 5 and counters.get("cached", 0) == 0
    # pt1 -> es and -> de, and three English captions -> de.
    assert counters["failed"] == 5

    # A rerun over the same cache translates nothing again.
    again, rerun_counters = _run(cfg, tmp_path / "rerun")
    assert again["en1"].captions == en1.captions
    assert rerun_counters.get("translated", 0) == 0
    assert rerun_counters["cached"] == counters["translated"]


def test_langid_only_and_candidate_set(tmp_path: Path) -> None:
    samples, counters = _run(TranslateConfig(target_langs=[]), tmp_path)
    assert samples["pt1"].language == "pt" and samples["en1"].language == "en"
    assert all(not s.captions or s.key == "kept" for s in samples.values())
    assert "translated" not in counters
    cfg = TranslateConfig(target_langs=["pt_BR", "gl"], langid_languages=["en", "es"])
    assert identifier_languages(cfg) == ["en", "es", "gl", "pt"]
    with pytest.raises(ValueError):
        TranslateCaptions(TranslateConfig(target_langs=["portuguese"]))
    with pytest.raises(ValueError, match="unknown translation backend"):
        TranslateCaptions(TranslateConfig(target_langs=["pt"], backend="deepl"))
    with pytest.raises(ValueError, match="needs translate.model"):
        TranslateCaptions(TranslateConfig(target_langs=["pt"], backend="marian"))
