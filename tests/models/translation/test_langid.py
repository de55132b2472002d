"""Language identification: known sentences, undetermined input, code normalisation."""

from __future__ import annotations

import pytest

from pairsift.models.translation.langid import (
    DEFAULT_LANGUAGES,
    LanguageIdentifier,
    detect_language,
    detect_languages,
    normalize_lang,
)


@pytest.mark.parametrize(
    ("text", "lang"),
    [
        ("The quick brown fox jumps over the lazy dog near the river.", "en"),
        ("O cachorro marrom corre no parque com as crianças.", "pt"),
        ("El perro marrón corre en el parque con los niños.", "es"),
        ("Der braune Hund läuft mit den Kindern im Park.", "de"),
        ("Le chien brun court dans le parc avec les enfants.", "fr"),
    ],
)
def test_detects_known_sentences(text: str, lang: str) -> None:
    assert detect_language(text) == lang


def test_batched_matches_single_and_keeps_order() -> None:
    texts = [
        "Une pomme rouge sur la table de la cuisine.",
        "",
        "A red apple on the kitchen table.",
        "Uma maçã vermelha na mesa da cozinha.",
    ]
    assert detect_languages(texts) == [detect_language(t) for t in texts]
    assert detect_languages(texts) == ["fr", "und", "en", "pt"]


@pytest.mark.parametrize("text", ["", "   \n ", "12345 !!! 3.14", "$ .25 ?"])
def test_letterless_text_is_undetermined(text: str) -> None:
    assert detect_language(text) == "und"


def test_confidence_threshold_and_determinism() -> None:
    strict = LanguageIdentifier(min_confidence=0.99)
    short = strict.detect("Flat.")  # a one-word caption: low confidence
    assert short.language == "und" and 0.0 < short.confidence < 0.99
    loose = LanguageIdentifier()
    first = loose.detect("A soccer ball on the grass.")
    again = LanguageIdentifier().detect("A soccer ball on the grass.")
    assert first == again and first.language == "en"


def test_candidate_set_restricts_answers() -> None:
    only = LanguageIdentifier(["pt", "es"])
    assert only.languages == ("es", "pt")
    assert only.detect("The dog runs in the park.").language in ("es", "pt")
    assert "en" in DEFAULT_LANGUAGES
    assert len(LanguageIdentifier(["all"]).languages) > len(DEFAULT_LANGUAGES)
    with pytest.raises(ValueError, match="does not know"):
        LanguageIdentifier(["xx"])


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("pt_BR", "pt"),
        ("pt-BR", "pt"),
        ("pt_BR.utf8", "pt"),
        ("ca@valencia.utf8", "ca"),
        ("sr_latin", "sr"),
        ("zh_TW", "zh"),
        ("EN", "en"),
        ("nb", "no"),
        ("ast", "ast"),
    ],
)
def test_normalize_lang(raw: str, code: str) -> None:
    assert normalize_lang(raw) == code


@pytest.mark.parametrize("raw", ["", "english", "p", "12", "pt/BR"])
def test_normalize_lang_rejects_non_codes(raw: str) -> None:
    with pytest.raises(ValueError):
        normalize_lang(raw)
