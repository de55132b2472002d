"""Language id and translation routing for a batch of pairs (the translate stage's logic).

Per pair: the caption's language is identified; for each target language the pair gets
``captions[<lang>]`` from, in this order, a translation it already carries (``KEY.<lang>.txt``
in the input, also under a locale spelling such as ``pt_BR``), the caption itself when it is
already in that language, or a machine translation from the caption's language (from
``fallback_language`` instead when langid is not sure, no backend translates the detected
language and one translates the fallback). A pair whose translation fails keeps going without it and says why in
``meta["translation_error"]``.

Language of a caption: the identifier's answer when its confidence reaches
``min_confidence``; otherwise ``fallback_language`` (the dataset's usual source language) or
``"und"``. Short captions ("A star.") are where langid guesses wrong, and a wrong guess would
copy an English caption as if it were Portuguese; a confident-or-fallback rule avoids that.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from pairsift.models.records import PairSample
from pairsift.models.translation.base import (
    TranslationResult,
    Translator,
    clean_text,
    translate_each,
)
from pairsift.models.translation.langid import UNDETERMINED, LanguageIdentifier, normalize_lang

ERROR_KEY = "translation_error"
# Detections at least this confident are never overridden by the fallback language.
SURE_CONFIDENCE = 0.9


@dataclass
class RoutingCounts:
    """What happened to each (pair, target language) slot; summed into stage counters."""

    translated: int = 0  # distinct captions (per batch and pair) translated by a backend now
    cached: int = 0  # distinct captions (per batch and pair) served by the translation cache
    copied: int = 0  # caption already in the target language
    kept: int = 0  # the input already carried this translation
    failed: int = 0  # no translation (reason in meta["translation_error"])
    skipped: int = 0  # pairs without a usable caption (reader errors, empty)

    def add(self, other: RoutingCounts) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class _Job:
    sample: PairSample
    text: str


def identify(
    sample: PairSample,
    identifier: LanguageIdentifier,
    min_confidence: float,
    fallback_language: str | None,
) -> tuple[str, float]:
    """Set ``sample.language`` (see the module docstring); return it with langid's confidence."""
    caption = clean_text(sample.caption or "")
    detection = identifier.detect(caption)
    if detection.language != UNDETERMINED and detection.confidence >= min_confidence:
        sample.language = detection.language
    elif caption and fallback_language:
        sample.language = normalize_lang(fallback_language)
    else:
        sample.language = UNDETERMINED
    return sample.language, detection.confidence


def _existing(sample: PairSample, target: str) -> str | None:
    """A translation the input carried for ``target``, under its own or a locale spelling."""
    text = sample.captions.get(target)
    if text and text.strip():
        return text
    for key in sorted(sample.captions):
        try:
            same = normalize_lang(key) == target
        except ValueError:
            continue
        if same and sample.captions[key].strip():
            return sample.captions[key]
    return None


def _route_source(
    translator: Translator, source: str, target: str, fallback_language: str | None
) -> str:
    """The language to translate from: the detected one, unless no backend translates it and
    one translates the dataset's usual language (a confident langid answer can still be wrong
    on a short caption: "An Adelaide Rosella." reads as Finnish)."""
    if not fallback_language:
        return source
    fallback = normalize_lang(fallback_language)
    if fallback in (source, target) or translator.supports(source, target):
        return source
    return fallback if translator.supports(fallback, target) else source


def _record_error(sample: PairSample, message: str) -> None:
    previous = sample.meta.get(ERROR_KEY)
    sample.meta[ERROR_KEY] = f"{previous}; {message}" if previous else message


def _run_group(
    translator: Translator, texts: list[str], source: str, target: str
) -> dict[str, TranslationResult]:
    """Translate the distinct texts of one language pair (captions repeat across pairs)."""
    unique = list(dict.fromkeys(texts))
    if not translator.supports(source, target):
        reason = translator.unsupported_reason(source, target)
        return {text: TranslationResult(None, reason) for text in unique}
    results = translate_each(translator, unique, source, target)
    return dict(zip(unique, results, strict=True))


def translate_samples(
    samples: list[PairSample],
    translator: Translator,
    identifier: LanguageIdentifier,
    target_langs: list[str],
    *,
    min_confidence: float = 0.5,
    fallback_language: str | None = "en",
) -> RoutingCounts:
    """Identify, route and translate a batch in place; every sample stays in the batch."""
    counts = RoutingCounts()
    targets = list(dict.fromkeys(normalize_lang(lang) for lang in target_langs))
    groups: dict[tuple[str, str], list[_Job]] = defaultdict(list)
    for sample in samples:
        caption = clean_text(sample.caption or "")
        if sample.error_status is not None or not caption:
            sample.language = sample.language or UNDETERMINED
            counts.skipped += 1
            continue
        try:
            source, confidence = identify(sample, identifier, min_confidence, fallback_language)
        except Exception as exc:  # noqa: BLE001 - one caption's langid failure is its own
            sample.language = UNDETERMINED
            _record_error(sample, f"language identification failed: {type(exc).__name__}: {exc}")
            counts.failed += 1
            continue
        for target in targets:
            job = _route(sample, caption, source, confidence, target, translator,
                         fallback_language, counts)
            if job is not None:
                groups[job[0]].append(job[1])
    for (source, target), jobs in sorted(groups.items()):
        _translate_group(translator, jobs, source, target, counts)
    return counts


def _route(
    sample: PairSample, caption: str, source: str, confidence: float, target: str,
    translator: Translator, fallback_language: str | None, counts: RoutingCounts,
) -> tuple[tuple[str, str], _Job] | None:
    """One caption towards one target: keep the input's translation, copy a caption already
    in the target language, fail an undetermined one, or return the translation job."""
    carried = _existing(sample, target)
    if carried is not None:
        sample.captions[target] = carried
        counts.kept += 1
        return None
    if source == target:
        sample.captions[target] = sample.caption or caption
        counts.copied += 1
        return None
    if source == UNDETERMINED:
        _record_error(sample, f"{target}: undetermined caption language")
        counts.failed += 1
        return None
    origin = source
    if confidence < SURE_CONFIDENCE:
        origin = _route_source(translator, source, target, fallback_language)
    return (origin, target), _Job(sample, caption)


def _translate_group(
    translator: Translator, jobs: list[_Job], source: str, target: str, counts: RoutingCounts
) -> None:
    """Translate one language pair's captions; a failed or empty translation is an error on
    its own sample only."""
    hits_before = translator.cache_hits
    results = _run_group(translator, [job.text for job in jobs], source, target)
    hits = translator.cache_hits - hits_before
    good = sum(1 for r in results.values() if r.text is not None and r.text.strip())
    counts.cached += min(hits, good)
    counts.translated += good - min(hits, good)
    for job in jobs:
        result = results[job.text]
        if result.text is None or not result.text.strip():
            _record_error(job.sample, f"{target}: {result.error or 'empty translation'}")
            counts.failed += 1
            continue
        job.sample.captions[target] = result.text
