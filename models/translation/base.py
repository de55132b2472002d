"""The translation interface every backend implements (no backend imports here).

Every backend gets whitespace-normalised, non-empty text (empty captions translate to "")
and must return one string per input; a backend that cannot translate raises
``TranslationError``. ``translate_each`` isolates failures to single captions. The
backends and the factory that picks one live beside this module (``factory.py``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from pairsift.models.translation.langid import normalize_lang


class TranslationError(RuntimeError):
    """A backend could not translate (missing tool, unsupported pair, engine failure)."""


class UnsupportedLanguagePair(TranslationError):
    pass


class BackendUnavailable(TranslationError):
    pass


def clean_text(text: str) -> str:
    """Collapse whitespace (newlines included): backends see one line per caption."""
    return " ".join(text.split())


class Translator(ABC):
    """Translate batches of captions from ``source`` to ``target`` (ISO 639-1 codes)."""

    name: str = "translator"

    @abstractmethod
    def supports(self, source: str, target: str) -> bool:
        """Whether this backend can translate ``source`` -> ``target`` (codes normalised)."""

    @abstractmethod
    def _translate(self, texts: list[str], source: str, target: str) -> list[str]:
        """Translate non-empty, whitespace-normalised texts; one output per input."""

    def translate(self, texts: Sequence[str], source: str, target: str) -> list[str]:
        source, target = normalize_lang(source), normalize_lang(target)
        cleaned = [clean_text(text) for text in texts]
        if source == target:
            return cleaned
        if not self.supports(source, target):
            raise UnsupportedLanguagePair(self.unsupported_reason(source, target))
        todo = [i for i, text in enumerate(cleaned) if text]
        out = [""] * len(cleaned)
        if todo:
            results = self._translate([cleaned[i] for i in todo], source, target)
            if len(results) != len(todo):
                raise TranslationError(
                    f"{self.name} returned {len(results)} translations for {len(todo)} texts"
                )
            for i, result in zip(todo, results, strict=True):
                out[i] = result
        return out

    def unsupported_reason(self, source: str, target: str) -> str:
        return f"{self.name} does not translate {source}->{target}"

    def back_translate(self, texts: Sequence[str], source: str, target: str) -> list[str]:
        """``texts`` were translated ``source`` -> ``target``; return them in ``source`` again
        (the pipeline checks a translation against its source by embedding consistency; this
        is for tools that want the round trip)."""
        return self.translate(texts, target, source)

    @property
    def cache_hits(self) -> int:
        """Translations served from a cache instead of the backend (0 without a cache)."""
        return 0

    def close(self) -> None:  # noqa: B027 - most backends hold nothing to release
        """Release models or processes; the translator must not be used afterwards."""


@dataclass
class TranslationResult:
    text: str | None  # None when the caption could not be translated
    error: str | None = None


def translate_each(
    translator: Translator, texts: Sequence[str], source: str, target: str
) -> list[TranslationResult]:
    """Translate a batch; if the batch fails, retry caption by caption so that one bad caption
    costs only its own translation (with the reason) and never the batch's."""
    try:
        return [TranslationResult(t) for t in translator.translate(texts, source, target)]
    except Exception as batch_error:  # noqa: BLE001 - isolate below, reasons are kept
        if len(texts) == 1:
            return [TranslationResult(None, _reason(batch_error))]
    results: list[TranslationResult] = []
    for text in texts:
        try:
            results.append(TranslationResult(translator.translate([text], source, target)[0]))
        except Exception as error:  # noqa: BLE001
            results.append(TranslationResult(None, _reason(error)))
    return results


def _reason(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:500]
