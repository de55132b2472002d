"""Noise settings of the quality benchmark over cached clean embeddings.

Shuffle and near-miss noise only re-pair cached rows. Partial noise (and the partial third of
mixed noise) rewrites a caption, so the driver builds those captions once per setting, with
the same per-pair edit `pairsift data` applies, embeds them (cached by content) and hands the
jobs their embeddings.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from pairsift.benchmarks.embedding_cache import CleanEmbeddings, embed_captions
from pairsift.pipeline.datasets.common import PairSource
from pairsift.pipeline.datasets.noise import NoisePlan, clean_plan, make_plan
from pairsift.pipeline.datasets.writer import partial_texts

NEAR_MISS_MODES = ("neighbour", "mixed")
EDITING_MODES = ("partial", "mixed")
BENCH_MODES = ("caption", "image", "neighbour", "partial", "mixed")


@dataclass(frozen=True)
class Setting:
    mode: str  # one of BENCH_MODES
    rate: float
    seed: int

    @property
    def label(self) -> str:
        return f"{self.mode} {round(self.rate * 100)}%"

    @property
    def key(self) -> tuple[str, float, int]:
        return (self.mode, self.rate, self.seed)


def check_modes(modes: Iterable[str]) -> None:
    """Translation noise changes target captions the cache does not hold: the pipeline's."""
    bad = sorted(set(modes) - set(BENCH_MODES))
    if bad:
        raise ValueError(
            f"bench quality takes noise modes {', '.join(BENCH_MODES)}, not {', '.join(bad)} "
            "(translation noise: build it with `pairsift data --noise-mode translation` and "
            "run the pipeline)")


def setting_plan(emb: CleanEmbeddings, setting: Setting) -> NoisePlan:
    """The plan `pairsift data` would draw for this setting over the train split."""
    assert emb.splits is not None and emb.groups is not None
    if setting.rate == 0.0:
        return clean_plan(len(emb.groups), setting.seed)
    if setting.mode in NEAR_MISS_MODES and emb.near_miss is None:
        raise ValueError(f"{setting.mode} noise needs a dataset that defines near misses "
                         "(synth, tuxpaint)")
    train_rows = np.flatnonzero(emb.splits == "train")
    return make_plan(emb.groups, train_rows, setting.mode, setting.rate, setting.seed,
                     near_miss=emb.near_miss)


def edited_rows(plan: NoisePlan) -> np.ndarray:
    """Rows whose caption the plan rewrites (partial noise, or mixed noise's partial third)."""
    noisy = np.flatnonzero(plan.noisy)
    return np.asarray([i for i in noisy.tolist() if plan.mode_of(i) == "partial"], dtype=np.int64)


def add_edited_captions(
    emb: CleanEmbeddings, source: PairSource, settings: Iterable[Setting], spec: str,
    image_size: int | None, cache_dir: str, device: str = "cpu",
    source_rows: np.ndarray | None = None,
) -> int:
    """Embed the rewritten captions of every editing setting into ``emb.edited_text``;
    returns how many captions were embedded now (the rest came from the cache).
    ``source_rows[i]`` is the source item of row i (all items: None)."""
    embedded = 0
    of_source = (np.arange(len(emb.text)) if source_rows is None
                 else np.asarray(source_rows, dtype=np.int64))
    for setting in settings:
        if setting.mode not in EDITING_MODES or setting.rate == 0.0:
            continue
        plan = setting_plan(emb, setting)
        rows = edited_rows(plan)
        captions = [partial_texts(source, int(of_source[i]), setting.seed)[0].caption
                    for i in rows]
        vectors, count = (embed_captions(captions, spec, image_size, cache_dir, device)
                          if captions else (np.zeros((0, emb.text.shape[1]), np.float32), 0))
        emb.edited_text[setting.key] = (rows, vectors)
        embedded += count
    return embedded


def noisy_text(emb: CleanEmbeddings, setting: Setting, plan: NoisePlan) -> np.ndarray:
    """English caption embeddings every row carries under the setting [N, dim]."""
    text = emb.text[plan.text_rows()]
    if setting.mode in EDITING_MODES and setting.rate > 0.0:
        if setting.key not in emb.edited_text:
            raise ValueError(f"{setting.label} seed {setting.seed}: its edited captions were "
                             "not embedded (add_edited_captions)")
        rows, vectors = emb.edited_text[setting.key]
        text[rows] = vectors
    return text
