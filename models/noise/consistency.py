"""Neighbour consistency: a second, heads-free view of whether a caption fits its image.

A matched pair's image and caption have the same neighbours: images that look like it carry
captions that read like its caption, and captions that read like it describe images that look
like its image. A shuffled caption shares nothing with the image's neighbours. The score is

    c(i) = mean cos(t_i, t_j) over the k images j nearest to v_i
         + mean cos(v_i, v_j) over the k captions j nearest to t_i,

on the raw tower embeddings (each side centred on the anchors' mean and L2-normalised, so
the common direction every embedding shares does not count as similarity). Neighbours are
drawn from a fixed anchor set (the fit pairs), a pair itself excluded, and searched by an
inverted-file index (models/noise/neighbour_index.py). It needs no trained
heads, ranks noise about as well as the cross-fitted loss, and errs on other pairs
(docs/noise_modelling.md, "Neighbour consistency", has the figures).

Fusion with the loss (:class:`ConsistencyRatio`): caption-swapped pairs give the null
density f0 of c exactly as they give the loss's; with the loss null's π0 the clean density is
f1 = (f − π0·f0)/(1 − π0), and the likelihood ratio Λ(c) = f0(c)/f1(c) multiplies the loss
posterior's odds, P(noisy | loss, c) / P(clean | loss, c) = Λ(c) · P(noisy | loss) /
P(clean | loss): naive Bayes, the two views taken as independent given the class.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pairsift.models.noise.neighbour_index import NeighbourIndex
from pairsift.models.noise.null import smoothed_density

__all__ = ["CONSISTENCY_RANGE", "ConsistencyRatio", "NeighbourIndex", "share_threshold"]

CONSISTENCY_RANGE = (-2.0, 2.0)  # a sum of two mean cosines
_GRID = 2049
_RATIO_CLIP = 1e4  # no single view moves the odds by more than this factor


@dataclass
class ConsistencyRatio:
    """Λ(c) = f0(c)/f1(c) on a grid of consistency values: how much more likely noise is."""

    lo: float
    hi: float
    lookup: np.ndarray = field(repr=False)  # Λ on the grid, non-increasing in c
    noise_ratio: float = 0.5
    weight: float = 1.0  # the division reads Λ**weight (see ConsistencyConfig.weight)

    @classmethod
    def fit(cls, counts: np.ndarray, null_counts: np.ndarray, noise_ratio: float,
            weight: float = 1.0, lo: float = CONSISTENCY_RANGE[0],
            hi: float = CONSISTENCY_RANGE[1]) -> ConsistencyRatio:
        """From the observed and null consistency histograms (equal bins of [lo, hi]) and π0."""
        counts = np.asarray(counts, dtype=np.float64)
        null_counts = np.asarray(null_counts, dtype=np.float64)
        if counts.shape != null_counts.shape:
            raise ValueError("observed and null consistency histograms must share their bins")
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"consistency.weight must be in [0, 1], got {weight}")
        if counts.sum() < 2 or null_counts.sum() < 2:
            raise ValueError("the consistency ratio needs at least 2 observed and 2 null values")
        from pairsift.models.noise.histogram import bin_centres

        pi0 = float(np.clip(noise_ratio, 0.0, 1.0 - 1e-3))
        centres = bin_centres(lo, hi, counts.size)
        grid = np.linspace(lo, hi, _GRID)
        f = np.maximum(smoothed_density(centres, counts, grid), 1e-12)
        f0 = np.maximum(smoothed_density(centres, null_counts, grid), 1e-12)
        f1 = np.maximum(f - pi0 * f0, 1e-6 * f) / (1.0 - pi0)
        ratio = np.clip(f0 / f1, 1.0 / _RATIO_CLIP, _RATIO_CLIP)
        # monotone about the null's mode: below it a lower c is never less noisy, above it a
        # higher c is never more noisy (the tails of two smoothed densities can cross anywhere)
        mode = int(np.argmax(f0))
        left = np.maximum.accumulate(ratio[: mode + 1][::-1])[::-1]
        right = np.minimum.accumulate(ratio[mode:])
        lookup = np.minimum.accumulate(np.concatenate([left, right[1:]]))
        return cls(lo=lo, hi=hi, lookup=lookup, noise_ratio=pi0, weight=float(weight))

    def ratio(self, consistency: np.ndarray) -> np.ndarray:
        """Λ**weight at each value; 1 (no evidence) where the consistency is NaN."""
        c = np.asarray(consistency, dtype=np.float64)
        grid = np.linspace(self.lo, self.hi, len(self.lookup))
        out = np.interp(np.nan_to_num(c, nan=0.0), grid, self.lookup) ** self.weight
        return np.where(np.isfinite(c), out, 1.0)

    def fuse(self, p_clean: np.ndarray, consistency: np.ndarray) -> np.ndarray:
        """P(clean | loss, c) from P(clean | loss): the noise odds times Λ(c)."""
        p = np.clip(np.asarray(p_clean, dtype=np.float64), 1e-12, 1.0)
        odds_noisy = (1.0 - p) / p * self.ratio(consistency)
        return 1.0 / (1.0 + odds_noisy)

    def to_dict(self) -> dict[str, Any]:
        return {"lo": self.lo, "hi": self.hi, "noise_ratio": self.noise_ratio,
                "weight": self.weight, "lookup": [float(f"{v:.6g}") for v in self.lookup]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ConsistencyRatio:
        return cls(lo=float(data["lo"]), hi=float(data["hi"]),
                   lookup=np.asarray(data["lookup"], dtype=np.float64),
                   noise_ratio=float(data["noise_ratio"]), weight=float(data.get("weight", 1.0)))


def share_threshold(p_clean: np.ndarray, weights: np.ndarray | None, share: float) -> float:
    """The posterior at or above which the top ``share`` of the (weighted) pairs lie.

    The noise-share cut of a fused posterior, which is not monotone in the loss alone: pairs
    below it are more than the null's count of noise. ``weights``: counts per value (a
    histogram's cells), None for one pair each.
    """
    p = np.asarray(p_clean, dtype=np.float64).ravel()
    w = np.ones_like(p) if weights is None else np.asarray(weights, dtype=np.float64).ravel()
    if p.size == 0 or w.sum() <= 0:
        return 0.0
    order = np.argsort(-p, kind="stable")
    cumulative = np.cumsum(w[order]) / w.sum()
    share = float(np.clip(share, 0.0, 1.0))
    index = int(np.searchsorted(cumulative, share - 1e-12, side="left"))
    return float(p[order[min(index, p.size - 1)]])
