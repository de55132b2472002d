"""Synthetic paired embeddings with known noise, for the tests.

Each pair has a latent concept z; the image, English and target-language "towers" are fixed
random linear maps of z plus tower noise, so a pair's views agree only through z. Noise
follows NCR's per-caption shuffle: a chosen share of captions (all their views) are permuted
among the noisy pairs. ``partial`` re-draws half of a noisy caption's concept instead, so it
still shares content with its image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pairsift.models.pairdata import PairEmbeddings


@dataclass
class SyntheticPairs:
    data: PairEmbeddings
    is_noisy: np.ndarray
    noise_kind: np.ndarray  # "clean" | "partial" | "complete"
    bad_translation: np.ndarray  # target caption belongs to another pair


def make_pairs(
    n: int,
    noise: float,
    seed: int,
    latent_dim: int = 32,
    image_dim: int = 64,
    text_dim: int = 48,
    target_langs: tuple[str, ...] = (),
    partial: float = 0.0,
    tower_noise: float = 0.5,
    towers_seed: int = 1234,
    translation_noise: float = 0.0,
) -> SyntheticPairs:
    """``n`` pairs, a ``noise`` share shuffled, of which a ``partial`` share is partial noise.

    ``towers_seed`` fixes the tower maps, so train and test sets from different ``seed`` values
    live in the same embedding spaces. ``translation_noise``: that share of pairs gets another
    pair's target-language caption while the English caption (and its multilingual embedding)
    stays right — a bad translation; ``bad_translation`` marks them.

    Why one piece: draws from one random generator in a fixed order; splitting it would make
    that order, and so every seed's data, easy to break.
    """
    if not 0.0 <= noise < 1.0 or not 0.0 <= partial <= 1.0:
        raise ValueError("noise must be in [0, 1) and partial in [0, 1]")
    towers = np.random.default_rng(towers_seed)
    a_img = towers.normal(size=(latent_dim, image_dim)) / np.sqrt(latent_dim)
    a_txt = towers.normal(size=(latent_dim, text_dim)) / np.sqrt(latent_dim)
    a_tgt = {
        lang: towers.normal(size=(latent_dim, text_dim)) / np.sqrt(latent_dim)
        for lang in target_langs
    }
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, latent_dim))
    z_txt = z.copy()
    noisy_idx = np.sort(rng.choice(n, size=int(round(noise * n)), replace=False))
    kind = np.full(n, "clean", dtype=object)
    n_partial = int(round(partial * noisy_idx.size))
    part_idx, full_idx = noisy_idx[:n_partial], noisy_idx[n_partial:]
    if full_idx.size >= 2:
        shift = rng.permutation(full_idx.size)
        fixed = shift == np.arange(full_idx.size)  # a caption shuffled onto itself stays clean
        shift[fixed] = (shift[fixed] + 1) % full_idx.size
        z_txt[full_idx] = z[full_idx[shift]]
        kind[full_idx] = "complete"
    half = latent_dim // 2
    z_txt[part_idx, half:] = rng.normal(size=(part_idx.size, latent_dim - half))
    kind[part_idx] = "partial"

    def tower(latent: np.ndarray, mat: np.ndarray) -> np.ndarray:
        out = latent @ mat + tower_noise * rng.normal(size=(latent.shape[0], mat.shape[1]))
        return out.astype(np.float32)

    z_tgt = z_txt.copy()
    bad = np.zeros(n, dtype=bool)
    if translation_noise > 0 and target_langs:
        bad_idx = np.sort(rng.choice(n, size=int(round(translation_noise * n)), replace=False))
        z_tgt[bad_idx] = z_txt[bad_idx[np.roll(np.arange(bad_idx.size), 1)]]
        bad[bad_idx] = bad_idx.size > 1
    tgt = {lang: tower(z_tgt, m) for lang, m in a_tgt.items()}
    src_ml = tower(z_txt, a_tgt[target_langs[0]]) if target_langs else None
    data = PairEmbeddings(
        image=tower(z, a_img),
        text=tower(z_txt, a_txt),
        text_tgt=tgt,
        text_src_ml=src_ml,
        keys=[f"p{i:07d}" for i in range(n)],
    )
    kinds = kind.astype(str)
    return SyntheticPairs(
        data=data, is_noisy=kinds != "clean", noise_kind=kinds, bad_translation=bad
    )
