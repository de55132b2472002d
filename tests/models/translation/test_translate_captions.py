"""Routing of captions to translation: copy, keep, translate, fail with a reason."""

from __future__ import annotations

import pytest

from pairsift.models.records import PairSample
from pairsift.models.translation.base import Translator
from pairsift.models.translation.cache import CachedTranslator, TranslationCache
from pairsift.models.translation.captions import RoutingCounts, translate_samples
from pairsift.models.translation.langid import LanguageIdentifier


class FakeTranslator(Translator):
    """en<->pt/es fake: tags text, records batches, fails on 'BOOM' captions."""

    name = "fake"

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, list[str]]] = []

    def supports(self, source: str, target: str) -> bool:
        return {source, target} in ({"en", "pt"}, {"en", "es"})

    def _translate(self, texts: list[str], source: str, target: str) -> list[str]:
        self.calls.append((source, target, list(texts)))
        if any("BOOM" in text for text in texts):
            raise RuntimeError("engine crashed")
        return [f"[{target}] {text}" for text in texts]


@pytest.fixture(scope="module")
def identifier() -> LanguageIdentifier:
    return LanguageIdentifier()


def _sample(key: str, caption: str | None, **captions: str) -> PairSample:
    return PairSample(key=key, source_shard="s0", index=0, caption=caption, captions=captions)


def test_routing_copy_keep_translate(identifier: LanguageIdentifier) -> None:
    english = _sample("a", "A small brown dog is running through the green park.")
    portuguese = _sample("b", "Um pequeno cachorro marrom corre pelo parque verde.")
    carried = _sample("c", "A red car is parked in front of the old house.", pt_BR="Um carro.")
    fake = FakeTranslator()
    counts = translate_samples(
        [english, portuguese, carried], fake, identifier, ["pt", "es"]
    )
    assert [s.language for s in (english, portuguese, carried)] == ["en", "pt", "en"]
    assert english.captions == {
        "pt": "[pt] A small brown dog is running through the green park.",
        "es": "[es] A small brown dog is running through the green park.",
    }
    # Already Portuguese: copied, never sent to the backend for pt.
    assert portuguese.captions["pt"] == portuguese.caption
    assert all(portuguese.caption not in texts for src, _, texts in fake.calls if src == "en")
    # The input's pt_BR translation is kept as the pt caption.
    assert carried.captions["pt"] == "Um carro." and carried.captions["pt_BR"] == "Um carro."
    assert carried.captions["es"].startswith("[es] ")
    # Portuguese -> Spanish is not supported by the fake: recorded, pair kept.
    assert "es" not in portuguese.captions
    assert portuguese.meta["translation_error"] == "es: fake does not translate pt->es"
    assert counts == RoutingCounts(translated=3, copied=1, kept=1, failed=1)
    assert sorted((s, t) for s, t, _ in fake.calls) == [("en", "es"), ("en", "pt")]


def test_failure_keeps_the_pair_with_a_reason(identifier: LanguageIdentifier) -> None:
    good = _sample("a", "The children are playing football in the garden.")
    bad = _sample("b", "BOOM the engine cannot translate this English sentence.")
    counts = translate_samples([good, bad], FakeTranslator(), identifier, ["pt"])
    assert good.captions["pt"].startswith("[pt] ")
    assert "pt" not in bad.captions
    assert "engine crashed" in bad.meta["translation_error"]
    assert counts.failed == 1 and counts.translated == 1


def test_short_captions_fall_back_to_the_source_language(identifier: LanguageIdentifier) -> None:
    short = _sample("a", "Sharp.")  # langid is unsure about one word
    translate_samples([short], FakeTranslator(), identifier, ["pt"], fallback_language="en")
    assert short.language == "en" and short.captions["pt"] == "[pt] Sharp."
    unsure = _sample("b", "Sharp.")
    translate_samples([unsure], FakeTranslator(), identifier, ["pt"], fallback_language=None)
    assert unsure.language == "und" and "pt" not in unsure.captions
    assert "undetermined" in unsure.meta["translation_error"]


def test_unusable_samples_pass_through(identifier: LanguageIdentifier) -> None:
    broken = _sample("a", None)
    broken.error_status = "read_error"
    empty = _sample("b", "   ")
    fake = FakeTranslator()
    counts = translate_samples([broken, empty], fake, identifier, ["pt"])
    assert broken.language == "und" and empty.language == "und"
    assert not broken.captions and not empty.captions and fake.calls == []
    assert counts.skipped == 2


def test_duplicates_translate_once_and_cache_counts(
    identifier: LanguageIdentifier, tmp_path
) -> None:
    caption = "An old wooden chair stands in the corner of the room."
    fake = FakeTranslator()
    cached = CachedTranslator(fake, TranslationCache(tmp_path))
    batch = [_sample(str(i), caption) for i in range(3)]
    first = translate_samples(batch, cached, identifier, ["pt"])
    assert len(fake.calls) == 1 and fake.calls[0][2] == [caption]
    assert (first.translated, first.cached) == (1, 0)
    rerun = [_sample(str(i), caption) for i in range(3)]
    second = translate_samples(rerun, cached, identifier, ["pt"])
    assert len(fake.calls) == 1 and (second.translated, second.cached) == (0, 1)
    assert [s.captions["pt"] for s in rerun] == [s.captions["pt"] for s in batch]


def test_unsure_unsupported_language_falls_back_to_the_source_language(
    identifier: LanguageIdentifier,
) -> None:
    bird = _sample("a", "An Adelaide Rosella.")  # langid: Finnish, confidence ~0.5
    fake = FakeTranslator()
    unsure = {"min_confidence": 0.3}  # below langid's ~0.5, above the 0.9 "sure" bar
    translate_samples([bird], fake, identifier, ["pt"], fallback_language="en", **unsure)
    assert bird.language == "fi"  # langid's answer is kept
    assert bird.captions["pt"] == "[pt] An Adelaide Rosella."  # routed en->pt
    assert fake.calls[0][:2] == ("en", "pt")
    # A sure detection is never overridden; without a fallback nothing is either.
    german = _sample("b", "Der kleine braune Hund läuft durch den grünen Park.")
    other = _sample("c", "An Adelaide Rosella.")
    translate_samples([german], FakeTranslator(), identifier, ["pt"], fallback_language="en")
    translate_samples(
        [other], FakeTranslator(), identifier, ["pt"], fallback_language=None, **unsure
    )
    assert "pt" not in german.captions and "pt" not in other.captions
    assert german.meta["translation_error"] == "pt: fake does not translate de->pt"
    assert other.meta["translation_error"] == "pt: fake does not translate fi->pt"
