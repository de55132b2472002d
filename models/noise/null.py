"""Empirical null for the clean posterior: losses of deliberately mismatched pairs.

A two-component mixture has to guess both shapes. On held-out losses of weak heads the clean
population is skewed with a long left tail and the noise population is compact, and two betas
(or Gaussians) then fit "left tail + everything else" and misread the noise ratio. But the
noise population can be *sampled*: a pair whose caption is swapped for another pair's caption
is a mismatch by construction, and scored by the same heads its loss follows the loss of a
shuffled (noisy) pair (docs/noise_modelling.md, "The empirical null", has the quartiles).

With the null density f0 known, the rest follows Efron's local false discovery rate:

- π0, the noise share, by Storey's estimator with the null's own λ-quantile t:
  π0 = P_obs(loss > t) / P_null(loss > t) (few clean pairs lie above t, so this is close and
  errs towards more noise);
- P(noisy | loss) = π0 · f0(loss) / f(loss), f the observed loss density; no shape is assumed
  for the clean population.

f0 is a beta fitted by moments to the null histogram (two parameters: stable from a few
hundred pairs); f is the observed histogram smoothed by a Gaussian kernel (Silverman's
bandwidth). The posterior is made non-increasing in the loss by a running minimum.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.stats import beta as beta_dist

from pairsift.models.noise.beta_em import moment_fit

if TYPE_CHECKING:
    from pairsift.models.pairdata import PairEmbeddings

_GRID = 2049


def derangement(n: int, seed: int) -> np.ndarray:
    """A seeded permutation with no fixed point (n ≥ 2): row i borrows caption ``out[i]``."""
    if n < 2:
        raise ValueError(f"a derangement needs at least 2 rows, got {n}")
    order = np.random.default_rng(seed).permutation(n)
    out = np.empty(n, dtype=np.int64)
    out[order] = np.roll(order, 1)  # a single cycle through a random order
    return out


def storey_lower(counts: np.ndarray, null_counts: np.ndarray, lam: float) -> float:
    """Storey's π0 on a score where *low* values are noise (the translation margin): the
    observed share below the null's (1 − λ)-quantile over the null's, in whole bins."""
    counts = np.asarray(counts, dtype=np.float64)
    null_counts = np.asarray(null_counts, dtype=np.float64)
    if counts.sum() <= 0 or null_counts.sum() <= 0:
        return 0.0
    cut = int(np.searchsorted(np.cumsum(null_counts) / null_counts.sum(), 1.0 - lam, side="left"))
    below_null = null_counts[:cut].sum() / null_counts.sum()
    below_obs = counts[:cut].sum() / counts.sum()
    return float(np.clip(below_obs / below_null, 0.0, 1.0)) if below_null > 0 else 0.0


def storey_interval(counts: np.ndarray, null_counts: np.ndarray, lam: float,
                    z: float = 1.96) -> tuple[float, float, float] | None:
    """Storey's π0 as :meth:`EmpiricalNull.fit` reads it (observed over null share above the
    null's λ-quantile, whole bins) with a normal-theory interval: both shares are binomial, so
    Var(log π0) ≈ (1 − a)/(n·a) + (1 − a0)/(n0·a0) (delta method). ``(low, π0, high)``,
    clipped to [0, 1]; None where either share is empty. It counts sampling error only: a
    null that is not exchangeable with the real noise biases π0 beyond this interval."""
    counts = np.asarray(counts, dtype=np.float64)
    null_counts = np.asarray(null_counts, dtype=np.float64)
    n, n0 = counts.sum(), null_counts.sum()
    if n < 2 or n0 < 2:
        return None
    cut = int(np.searchsorted(np.cumsum(null_counts) / n0, lam, side="left"))
    above_null, above_obs = null_counts[cut + 1 :].sum() / n0, counts[cut + 1 :].sum() / n
    if above_null <= 0 or above_obs <= 0:
        return None
    pi0 = above_obs / above_null
    spread = z * np.sqrt((1 - above_obs) / (n * above_obs) + (1 - above_null) / (n0 * above_null))
    clip = lambda v: float(np.clip(v, 0.0, 1.0))  # noqa: E731
    return clip(pi0 * np.exp(-spread)), clip(pi0), clip(pi0 * np.exp(spread))


def smoothed_density(x: np.ndarray, w: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Gaussian-kernel density of weighted points on ``grid`` (Silverman's bandwidth)."""
    n = float(w.sum())
    mean = float(np.average(x, weights=w))
    std = float(np.sqrt(np.average((x - mean) ** 2, weights=w)))
    width = max(1.06 * std * n ** (-0.2), 2.0 / len(grid))
    dens = np.zeros_like(grid)
    for start in range(0, len(grid), 256):  # bounded memory: [256, bins] at a time
        g = grid[start : start + 256, None]
        dens[start : start + 256] = (w[None, :] * np.exp(-0.5 * ((g - x[None, :]) / width) ** 2)).sum(1)
    return dens / (n * width * np.sqrt(2 * np.pi))


def _quantile_x(
    counts: np.ndarray, centres: np.ndarray, x_min: float, x_max: float, share: float
) -> float:
    """Normalised loss below which ``share`` of the histogram's mass lies (linear in a bin)."""
    width = (centres[1] - centres[0]) if centres.size > 1 else 1.0
    edges = np.concatenate([centres - width / 2, centres[-1:] + width / 2])
    cdf = np.concatenate([[0.0], np.cumsum(counts) / counts.sum()])
    share = float(np.clip(share, 0.0, 1.0))
    i = int(np.clip(np.searchsorted(cdf, share, side="left"), 1, cdf.size - 1))
    step = cdf[i] - cdf[i - 1]  # > 0: the first edge whose cdf reaches ``share``
    frac = (share - cdf[i - 1]) / step if step > 0 else 1.0
    loss = float(edges[i - 1] + frac * (edges[i] - edges[i - 1]))
    return float((loss - x_min) / (x_max - x_min))


@dataclass
class EmpiricalNull:
    """The fitted null: π0, the null beta and the clean posterior on a normalised-loss grid."""

    noise_ratio: float
    alpha: float
    beta: float
    lam: float
    lookup: np.ndarray = field(repr=False)
    # normalised loss below which the observed share 1 − π0 lies: the estimated clean count
    keep_x: float | None = None

    @classmethod
    def fit(
        cls, counts: np.ndarray, null_counts: np.ndarray, centres: np.ndarray,
        x_min: float, x_max: float, eps: float, lam: float, pi0_override: float | None = None,
    ) -> EmpiricalNull:
        """From the observed and null loss histograms on the same bins (``centres``);
        ``pi0_override``: the noise share as another view estimates it, used instead of
        Storey's on these losses (a translation's fit: its noise is the margin's)."""
        counts = np.asarray(counts, dtype=np.float64)
        null_counts = np.asarray(null_counts, dtype=np.float64)
        if counts.shape != null_counts.shape or counts.shape != centres.shape:
            raise ValueError("observed and null histograms must share their bins")
        if null_counts.sum() < 2 or counts.sum() < 2:
            raise ValueError("the empirical null needs at least 2 observed and 2 null losses")
        if not 0.0 < lam < 1.0:
            raise ValueError(f"null_lambda must be in (0, 1), got {lam}")
        x = np.clip((centres - x_min) / (x_max - x_min), eps, 1 - eps)
        a0, b0 = moment_fit(x, null_counts)
        # Storey at the null's λ-quantile, counted in whole bins on both histograms
        cut = int(np.searchsorted(np.cumsum(null_counts) / null_counts.sum(), lam, side="left"))
        above_null = null_counts[cut + 1 :].sum() / null_counts.sum()
        above_obs = counts[cut + 1 :].sum() / counts.sum()
        pi0 = float(np.clip(above_obs / above_null, 0.0, 1.0)) if above_null > 0 else 1.0
        if pi0_override is not None:
            pi0 = float(np.clip(pi0_override, 0.0, 1.0))
        grid = np.linspace(eps, 1 - eps, _GRID)
        observed = np.maximum(smoothed_density(x, counts, grid), 1e-12)
        lfdr = np.clip(pi0 * beta_dist.pdf(grid, a0, b0) / observed, 0.0, 1.0)
        lookup = np.minimum.accumulate(1.0 - lfdr)  # a higher loss is never cleaner
        return cls(noise_ratio=pi0, alpha=float(a0), beta=float(b0), lam=lam, lookup=lookup,
                   keep_x=_quantile_x(counts, centres, x_min, x_max, 1.0 - pi0))

    def to_dict(self) -> dict[str, Any]:
        return {
            "noise_ratio": self.noise_ratio, "alpha": self.alpha, "beta": self.beta,
            "lambda": self.lam, "lookup": [round(float(v), 6) for v in self.lookup],
            "keep_x": self.keep_x,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EmpiricalNull:
        return cls(
            noise_ratio=float(data["noise_ratio"]), alpha=float(data["alpha"]),
            beta=float(data["beta"]), lam=float(data["lambda"]),
            lookup=np.asarray(data["lookup"], dtype=np.float64),
            keep_x=None if data.get("keep_x") is None else float(data["keep_x"]),
        )


def with_swapped_captions(data: PairEmbeddings, seed: int) -> PairEmbeddings:
    """``data`` (PairEmbeddings) with every caption view moved to another row (a derangement).

    Row i keeps its image (and key, so cross-fitted scoring picks the heads of its fold) and
    gets the captions of row ``derangement(n)[i]``: a mismatch by construction.
    """
    from pairsift.models.pairdata import PairEmbeddings

    other = derangement(data.image.shape[0], seed)
    return PairEmbeddings(
        image=data.image,
        text=data.text[other],
        text_tgt={lang: v[other] for lang, v in data.text_tgt.items()},
        text_src_ml=None if data.text_src_ml is None else data.text_src_ml[other],
        keys=data.keys,
    )
