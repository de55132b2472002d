"""The langid/translate stage: a thin Beam wrapper over ``models.translation.captions``.

Pairs are batched with ``beam.BatchElements`` (fixed size ``cfg.batch_size``; bundles end with
a smaller batch) so each backend call translates many captions; the translator and the
language identifier are built once per DoFn instance in ``setup``. Every input pair comes
out exactly once: translation failures are recorded on the pair, never raised.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import apache_beam as beam
from apache_beam.metrics import Metrics

from pairsift.models.config import TranslateConfig
from pairsift.models.records import PairSample
from pairsift.models.translation.base import Translator
from pairsift.models.translation.captions import RoutingCounts, translate_samples
from pairsift.models.translation.factory import BACKENDS, build_translator
from pairsift.models.translation.langid import DEFAULT_LANGUAGES, LanguageIdentifier, normalize_lang

NAMESPACE = "translate"


def identifier_languages(cfg: TranslateConfig) -> list[str]:
    """The langid candidate set: the configured (or default) set plus every language the
    stage routes on, so "already in the target language" can be recognised."""
    base = list(cfg.langid_languages) if cfg.langid_languages else list(DEFAULT_LANGUAGES)
    if base == ["all"]:
        return base
    extra = [*cfg.target_langs, *([cfg.source_lang] if cfg.source_lang else [])]
    return sorted({normalize_lang(code) for code in [*base, *extra]})


class ShardTranslator:
    """Language id, and translation into the target languages, of a list of pairs in place.

    Built once per worker (``setup``); pass 1 calls it on each shard's validated pairs in
    input order, ``batch_size`` at a time, so each backend call translates many captions and
    the batches do not depend on how the runner splits work.
    """

    def __init__(self, cfg: TranslateConfig, device: str) -> None:
        self.cfg = cfg
        self.device = device
        self.translator: Translator | None = None
        self.identifier: LanguageIdentifier | None = None

    def setup(self) -> None:
        self.identifier = LanguageIdentifier(identifier_languages(self.cfg))
        if self.cfg.target_langs:
            self.translator = build_translator(
                self.cfg.backend,
                self.cfg.model,
                self.device,
                cache_dir=self.cfg.cache_dir,
                batch_size=self.cfg.batch_size,
            )

    def __call__(self, samples: list[PairSample]) -> RoutingCounts:
        assert self.identifier is not None, "call setup() first"
        total = RoutingCounts()
        size = max(1, self.cfg.batch_size)
        for start in range(0, len(samples), size):
            counts = translate_samples(
                samples[start : start + size],
                self.translator or _NoTranslator(),
                self.identifier,
                self.cfg.target_langs,
                min_confidence=self.cfg.langid_min_confidence,
                fallback_language=self.cfg.source_lang,
            )
            total.add(counts)
        for name in RoutingCounts.__dataclass_fields__:
            value = getattr(total, name)
            if value:
                Metrics.counter(NAMESPACE, name).inc(value)
        return total

    def close(self) -> None:
        if self.translator is not None:
            self.translator.close()
            self.translator = None


class _TranslateBatch(beam.DoFn):
    def __init__(self, cfg: TranslateConfig, device: str) -> None:
        self.stage = ShardTranslator(cfg, device)

    def setup(self) -> None:
        self.stage.setup()

    def process(self, batch: Iterable[PairSample]) -> Iterator[PairSample]:
        samples = list(batch)
        self.stage(samples)
        yield from samples

    def teardown(self) -> None:
        self.stage.close()


class _NoTranslator(Translator):
    """Stands in when no target language is configured (langid only)."""

    name = "none"

    def supports(self, source: str, target: str) -> bool:
        return False

    def _translate(self, texts: list[str], source: str, target: str) -> list[str]:
        raise AssertionError("no target languages configured")


class TranslateCaptions(beam.PTransform):
    """PCollection[PairSample] -> PCollection[PairSample] with ``language`` set and
    ``captions[<lang>]`` filled for ``cfg.target_langs`` (see ``models.translation.captions``).
    """

    def __init__(self, cfg: TranslateConfig, device: str = "auto") -> None:
        """``device``: where a marian backend runs (the run's ``encoder.device``)."""
        super().__init__()
        if cfg.batch_size < 1:
            raise ValueError(f"translate batch_size must be positive, got {cfg.batch_size}")
        # Config mistakes fail at construction, not later on every worker.
        for lang in cfg.target_langs:
            normalize_lang(lang)
        if cfg.backend not in BACKENDS:
            raise ValueError(f"unknown translation backend {cfg.backend!r}; choose from {BACKENDS}")
        if cfg.backend == "marian" and cfg.target_langs and not cfg.model:
            raise ValueError("translate.backend 'marian' needs translate.model")
        self.cfg = cfg
        self.device = device

    def expand(self, samples: beam.PCollection) -> beam.PCollection:
        size = self.cfg.batch_size
        return (
            samples
            | "Batch" >> beam.BatchElements(min_batch_size=size, max_batch_size=size)
            | "LangidTranslate" >> beam.ParDo(_TranslateBatch(self.cfg, self.device))
        )
