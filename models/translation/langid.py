"""Language identification for captions, with py3langid's bundled naive-Bayes model.

Why py3langid rather than lingua (both bundle their models and are deterministic): lingua is
more accurate on some languages but several times larger and slower; what the translate stage
needs is precision where it acts, and below ``langid_min_confidence`` it falls back to the
configured source language. The candidate set matters more than the library (over all 140
labels short English captions go to Frisian, Galician or Italian). docs/translation.md,
"Language identification", has the measurements.
"""

from __future__ import annotations

import copy
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

UNDETERMINED = "und"

# High-resource languages of web-scraped caption data (ISO 639-1, as py3langid labels them;
# Norwegian is "no"). Callers widen the set with ``languages=("all",)``.
# fmt: off
DEFAULT_LANGUAGES: tuple[str, ...] = (
    "ar", "bg", "bn", "ca", "cs", "da", "de", "el", "en", "es", "et", "fa", "fi", "fr", "he",
    "hi", "hr", "hu", "id", "it", "ja", "ko", "lt", "lv", "ms", "nl", "no", "pl", "pt", "ro",
    "ru", "sk", "sl", "sr", "sv", "ta", "th", "tr", "uk", "ur", "vi", "zh",
)
# fmt: on

# Locale and legacy spellings -> the ISO 639-1 code used for `captions[<lang>]` and the
# audit's `caption_<lang>` columns (tuxpaint's "pt_BR.utf8" -> "pt", "zh_TW" -> "zh").
_ALIASES: dict[str, str] = {"nb": "no", "nn": "no", "iw": "he", "in": "id", "ji": "yi"}
_CODE = re.compile(r"^[a-z]{2,3}$")
_LETTER = re.compile(r"[^\W\d_]", re.UNICODE)


def normalize_lang(code: str) -> str:
    """``pt_BR``, ``pt-BR``, ``pt_BR.utf8``, ``sr@latin``, ``PT`` -> ``pt``, ``sr``, ``pt``.

    Raises ``ValueError`` for something that is not a language tag, so a typo in a config
    fails at start-up instead of silently matching no caption.
    """
    base = code.strip().split(".", 1)[0].split("@", 1)[0]
    base = re.split(r"[-_]", base, maxsplit=1)[0].lower()
    if not _CODE.match(base):
        raise ValueError(f"not a language code: {code!r}")
    return _ALIASES.get(base, base)


@dataclass(frozen=True)
class Detection:
    language: str
    confidence: float  # posterior of the winning language over the candidate set


class LanguageIdentifier:
    """py3langid over a fixed candidate set; one instance per worker (the model is ~5 MB).

    ``min_confidence`` turns low-confidence answers into ``"und"``; 0 keeps every best guess.
    Thread-safe: ``set_languages`` mutates the py3langid object, so each instance owns one.
    """

    def __init__(
        self, languages: Sequence[str] | None = DEFAULT_LANGUAGES, min_confidence: float = 0.0
    ) -> None:
        if not 0.0 <= min_confidence <= 1.0:
            raise ValueError(f"min_confidence must be in [0, 1], got {min_confidence}")
        self._model: Any = copy.copy(_base_model())
        available = set(self._model.labels)
        if languages is None or tuple(languages) == ("all",):
            self.languages: tuple[str, ...] = tuple(sorted(available))
        else:
            wanted = sorted({normalize_lang(code) for code in languages})
            unknown = [code for code in wanted if code not in available]
            if unknown:
                raise ValueError(f"language(s) the identifier does not know: {unknown}")
            self.languages = tuple(wanted)
            self._model.set_languages(list(self.languages))
        self.min_confidence = min_confidence
        self._lock = threading.Lock()

    def detect(self, text: str | None) -> Detection:
        """Best language and its confidence; ``und`` with 0 for text without letters."""
        if not text or not _LETTER.search(text):
            return Detection(UNDETERMINED, 0.0)
        with self._lock:
            label, confidence = self._model.classify(" ".join(text.split()))
        confidence = float(confidence)
        if confidence < self.min_confidence:
            return Detection(UNDETERMINED, confidence)
        return Detection(normalize_lang(label), confidence)

    def detect_many(self, texts: Sequence[str | None]) -> list[Detection]:
        return [self.detect(text) for text in texts]


_BASE: Any = None
_BASE_LOCK = threading.Lock()


def _base_model() -> Any:
    """py3langid's model, decompressed once per process (~1 s). Instances take shallow
    copies: ``set_languages`` rebinds the arrays it restricts, it never edits them."""
    global _BASE
    with _BASE_LOCK:
        if _BASE is None:
            from py3langid.langid import MODEL_FILE
            from py3langid.langid import LanguageIdentifier as _Py3Identifier

            _BASE = _Py3Identifier.from_model_file(MODEL_FILE, norm_probs=True)
        return _BASE


_DEFAULT: LanguageIdentifier | None = None
_DEFAULT_LOCK = threading.Lock()


def default_identifier() -> LanguageIdentifier:
    """A process-wide identifier over ``DEFAULT_LANGUAGES`` (built on first use)."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            _DEFAULT = LanguageIdentifier()
        return _DEFAULT


def detect_language(text: str) -> str:
    """ISO 639-1 code of ``text`` ("en", "pt", ...), ``"und"`` when empty or letterless."""
    return default_identifier().detect(text).language


def detect_languages(texts: list[str]) -> list[str]:
    """Batched :func:`detect_language`, order preserved."""
    return [d.language for d in default_identifier().detect_many(texts)]
