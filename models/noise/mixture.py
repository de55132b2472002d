"""Beta mixture over per-pair losses, fitted on a histogram (RCAR's division).

Why a histogram: the pipeline sums counts from every worker (a CombineGlobally of int64
arrays), so the fit is exact up to binning, costs O(bins) per EM step and works for any N.

Components are kept sorted by mean: component 0 is the low-loss (clean) one.

Partial vs complete noise (design): a *nested split* of the noisy component. The two-component
clean/noisy fit is left exactly as RCAR defines it, so ``posterior_clean`` and ``noise_ratio``
do not depend on the partial-noise model. Then a second two-component beta mixture is fitted
to the histogram re-weighted by each bin's noisy posterior. Partially wrong captions still
share some content with their image, so their losses sit between clean and unrelated pairs:
the lower-loss sub-component is *partial* noise, the higher one *complete* noise. The split is
accepted only if it pays for itself (BIC lower than a single beta), each sub-component holds
``partial_min_weight`` of the noise and their means differ by ``partial_min_separation``;
otherwise all noise is *complete*. A third free component in one joint fit was rejected
because it lets the partial population steal mass from the clean component and moves the
clean/noisy boundary that the whole division rests on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pairsift.models.config import MixtureConfig
from pairsift.models.noise.beta_em import (
    beta_log_pdf,
    degenerate_reason,
    initial_guesses,
    logsumexp,
    mle_fit,
    moment_fit,
    run_em,
    sort_by_mean,
)
from pairsift.models.noise.consistency import CONSISTENCY_RANGE, ConsistencyRatio
from pairsift.models.noise.gaussian import fit_gaussian_histogram, gaussian_log_pdf
from pairsift.models.noise.histogram import bin_centres, histogram
from pairsift.models.noise.null import EmpiricalNull

_GRID = 2049  # lookup grid for the monotone posterior
_TIE_BREAK = 1e-3  # weight of the loss itself in the clean posterior (order within plateaus)


@dataclass
class BetaMixture:
    """A fitted mixture on normalised losses; ``x_min``/``x_max`` map raw losses onto [0, 1].

    ``alphas``/``betas``/``weights`` hold the clean (0) and noisy (1) components; ``split_*``
    hold the optional partial (0) / complete (1) split of the noisy component. When the beta
    fit is degenerate (see :func:`degenerate_reason`), ``gauss_*`` hold the two Gaussians the
    posterior and the noise ratio come from instead, and ``fallback`` says why. With an
    empirical null (``null``) the posterior and noise ratio are the null's, except that a null
    reading a noise share ≥ ``null_max_ratio`` leaves the posterior to the components
    (``null_fallback`` says why): its p_clean ≈ 0 for every pair would starve the robust phase.
    """

    alphas: np.ndarray
    betas: np.ndarray
    weights: np.ndarray
    x_min: float
    x_max: float
    eps: float = 1e-3
    split_alphas: np.ndarray | None = None
    split_betas: np.ndarray | None = None
    split_weights: np.ndarray | None = None
    log_likelihood: float = float("nan")
    iterations: int = 0
    # set when the beta fit was degenerate: the Gaussian components the division uses instead
    gauss_means: np.ndarray | None = None
    gauss_stds: np.ndarray | None = None
    gauss_weights: np.ndarray | None = None
    fallback: str | None = None  # why the Gaussian components are used
    # set when fitted with null losses: the posterior and noise ratio the division uses
    null: EmpiricalNull | None = None
    null_fallback: str | None = None  # why the posterior is the components' despite a null
    # set by :meth:`with_consistency`: the neighbour-consistency likelihood ratio the division
    # multiplies the loss posterior's noise odds by (models/noise/consistency.py)
    consistency: ConsistencyRatio | None = None
    # False: the posterior reads the fused score alone, from the prior 1 − π0 (a translation's
    # fit: its image–target loss ranked broken translations worse than the margin alone)
    loss_evidence: bool = True
    _lookup: np.ndarray | None = field(default=None, repr=False, compare=False)

    # ----------------------------------------------------------------- fitting
    @classmethod
    def fit_histogram(
        cls, counts: np.ndarray, lo: float, hi: float, cfg: MixtureConfig,
        null_counts: np.ndarray | None = None, pi0_override: float | None = None,
    ) -> BetaMixture:
        """EM on bin centres weighted by counts (min–max normalised over occupied bins).

        With ``null_counts`` (losses of caption-swapped pairs on the same bins) and
        ``cfg.null_model == "shuffled"``, the division's posterior and noise ratio come from the
        empirical null (:mod:`pairsift.models.noise.null`); the two components stay for the
        partial/complete split and the report.

        Why one piece: normalisation, initial guesses, EM, the MLE refinement, the fallback and
        the null all act on the same normalised grid and weights.
        """
        counts = np.asarray(counts, dtype=np.float64)
        if counts.ndim != 1 or counts.size < 2:
            raise ValueError("counts must be a 1-d histogram with at least 2 bins")
        if np.any(counts < 0) or not np.all(np.isfinite(counts)):
            raise ValueError("histogram counts must be finite and non-negative")
        occupied = np.flatnonzero(counts)
        if occupied.size < 2:
            raise ValueError("need losses spread over at least 2 histogram bins to fit a mixture")
        centres = bin_centres(lo, hi, counts.size)
        keep = slice(occupied[0], occupied[-1] + 1)
        raw, w = centres[keep], counts[keep]
        x_min, x_max = float(raw[0]), float(raw[-1])
        x = np.clip((raw - x_min) / (x_max - x_min), cfg.eps, 1 - cfg.eps)
        if cfg.m_step not in ("moments", "moments_mle"):
            raise ValueError(f"unknown mixture m_step {cfg.m_step!r}")
        best: tuple[np.ndarray, np.ndarray, np.ndarray, float, int] | None = None
        for a0, b0, pi0 in initial_guesses(x, w):
            a, b, pi, ll, it = run_em(x, w, a0, b0, pi0, cfg)
            if cfg.m_step == "moments_mle":
                a, b, pi, ll, it2 = run_em(x, w, a, b, pi, cfg, mle=True)
                it += it2
            if best is None or ll > best[3] + 1e-9 * abs(ll):
                best = (a, b, pi, ll, it)
        assert best is not None
        a, b, pi, ll, it = best
        a, b, pi = sort_by_mean(a, b, pi)
        model = cls(a, b, pi, x_min, x_max, cfg.eps, log_likelihood=ll, iterations=it)
        reason = degenerate_reason(a, b, pi, cfg)
        if reason is not None and cfg.fallback == "gaussian":
            means, stds, weights, _ = fit_gaussian_histogram(x, w)
            model.gauss_means, model.gauss_stds, model.gauss_weights = means, stds, weights
            model.fallback = reason
        elif cfg.fallback not in ("gaussian", "none"):
            raise ValueError(f"unknown mixture fallback {cfg.fallback!r}")
        if cfg.partial_noise:
            model._fit_split(x, w, cfg)
        if cfg.null_model not in ("shuffled", "none"):
            raise ValueError(f"unknown mixture null_model {cfg.null_model!r}")
        if null_counts is not None and cfg.null_model == "shuffled":
            model.null = EmpiricalNull.fit(
                counts, null_counts, centres, x_min, x_max, cfg.eps, cfg.null_lambda, pi0_override
            )
            if not 0.0 < cfg.null_max_ratio <= 1.0:
                raise ValueError(f"null_max_ratio must be in (0, 1], got {cfg.null_max_ratio}")
            if model.null.noise_ratio >= cfg.null_max_ratio:
                model.null_fallback = (
                    f"the null reads a noise share of {model.null.noise_ratio:.3f} "
                    f"(>= null_max_ratio {cfg.null_max_ratio}): no clean share to weigh pairs by"
                )
        return model

    def _fit_split(self, x: np.ndarray, w: np.ndarray, cfg: MixtureConfig) -> None:
        """Nested split of the noisy component into partial / complete noise (see module doc)."""
        noisy_w = w * (1.0 - self._raw_posterior(x))
        total = noisy_w.sum()
        if total < 10:
            return
        a1, b1 = moment_fit(x, noisy_w)
        ll1 = float((noisy_w * beta_log_pdf(x, np.array([a1]), np.array([b1]))[:, 0]).sum())
        cdf = np.cumsum(noisy_w) / total
        q_lo, q_hi = x[np.searchsorted(cdf, 0.25)], x[np.searchsorted(cdf, 0.75)]
        init_a, init_b = [], []
        for q in (q_lo, q_hi):
            mask = np.abs(x - q) <= 0.15
            init_a.append(moment_fit(x[mask], noisy_w[mask])[0] if noisy_w[mask].sum() else 2.0)
            init_b.append(moment_fit(x[mask], noisy_w[mask])[1] if noisy_w[mask].sum() else 2.0)
        mle = cfg.m_step == "moments_mle"
        if mle:
            a1, b1 = mle_fit(x, noisy_w, a1, b1)
            ll1 = float((noisy_w * beta_log_pdf(x, np.array([a1]), np.array([b1]))[:, 0]).sum())
        a2, b2, pi2, ll2, _ = run_em(
            x, noisy_w, np.array(init_a), np.array(init_b), np.array([0.5, 0.5]), cfg, mle
        )
        a2, b2, pi2 = sort_by_mean(a2, b2, pi2)
        n_eff = float(total)
        bic1 = -2 * ll1 + 2 * np.log(n_eff)
        bic2 = -2 * ll2 + 5 * np.log(n_eff)
        means = a2 / (a2 + b2)
        if (
            bic2 < bic1
            and pi2.min() >= cfg.partial_min_weight
            and means[1] - means[0] >= cfg.partial_min_separation
        ):
            self.split_alphas, self.split_betas, self.split_weights = a2, b2, pi2

    # ----------------------------------------------------------------- queries
    def _log_joint(self, x: np.ndarray) -> np.ndarray:
        """[n, 2] log weight + log density of the components the division uses."""
        if self.gauss_means is not None:
            assert self.gauss_stds is not None and self.gauss_weights is not None
            dens = gaussian_log_pdf(x, self.gauss_means, self.gauss_stds)
            return dens + np.log(self.gauss_weights)[None, :]
        return beta_log_pdf(x, self.alphas, self.betas) + np.log(self.weights)[None, :]

    @property
    def noise_ratio(self) -> float:
        """Estimated share of noisy pairs (the null's π0, else the noisy component's weight)."""
        if self.null is not None:
            return self.null.noise_ratio
        weights = self.gauss_weights if self.gauss_weights is not None else self.weights
        return float(weights[1:].sum())

    @property
    def partial_ratio(self) -> float:
        """Estimated share of partially noisy pairs (0 when the split was not accepted)."""
        if self.split_weights is None:
            return 0.0
        return float(self.noise_ratio * self.split_weights[0])

    def normalise(self, losses: np.ndarray) -> np.ndarray:
        span = self.x_max - self.x_min
        x = (np.asarray(losses, dtype=np.float64) - self.x_min) / span
        return np.clip(x, self.eps, 1 - self.eps)

    def _raw_posterior(self, x: np.ndarray) -> np.ndarray:
        joint = self._log_joint(x)
        return np.exp(joint[:, 0] - logsumexp(joint, axis=1))

    def _clean_centre(self) -> float:
        """Mean of the clean (low-loss) component, normalised loss."""
        if self.gauss_means is not None:
            return float(self.gauss_means[0])
        return float(self.alphas[0] / (self.alphas[0] + self.betas[0]))

    def _monotone_lookup(self) -> np.ndarray:
        """Clean posterior on a grid, made non-increasing in loss, one rule per tail.

        A two-component fit can go wrong at either end. Left of the clean component's mean a
        broad noisy component can outlive a narrow clean one, so the raw posterior falls again
        at the lowest losses; there a pair counts as clean as the cleanest posterior between
        it and the clean mean (a lower loss is never less clean). Right of it a broad clean
        component can outlive a narrow noisy one and the posterior rises again; there it is
        held at its running minimum (a higher loss is never cleaner). Where the raw posterior
        is already monotone both rules leave it as it is. Isotonic regression, used before,
        averaged the left tail into the peak: with a narrow clean component it capped every
        pair's posterior below ½ and the division kept none.
        """
        if self._lookup is None:
            grid = np.linspace(self.eps, 1 - self.eps, _GRID)
            raw = self._raw_posterior(grid)
            centre = int(np.clip(np.searchsorted(grid, self._clean_centre()), 0, _GRID - 1))
            left = np.maximum.accumulate(raw[: centre + 1][::-1])[::-1]
            curve = np.concatenate([left, raw[centre + 1 :]])
            self._lookup = np.clip(np.minimum.accumulate(curve), 0.0, 1.0)
        return self._lookup

    def posterior_clean(self, losses: np.ndarray) -> np.ndarray:
        """P(clean | loss), strictly decreasing in the loss.

        The monotone lookup is flat wherever the fitted posterior was not monotone; inside such
        a plateau every pair would tie, and a division that ranks pairs worse than their own
        loss is no use. A tie-break of weight ``_TIE_BREAK`` by the normalised loss keeps the
        loss's order and moves no posterior by more than that weight.
        """
        use_null = self.null is not None and self.null_fallback is None
        lookup = self.null.lookup if use_null else self._monotone_lookup()
        grid = np.linspace(self.eps, 1 - self.eps, len(lookup))
        smooth = np.interp(self.normalise(losses), grid, lookup)
        # logistic of the unclipped normalised loss: strictly decreasing over every real loss
        raw = (np.asarray(losses, dtype=np.float64) - self.x_min) / (self.x_max - self.x_min)
        order = 1.0 / (1.0 + np.exp(np.clip(4.0 * (raw - 0.5), -700.0, 700.0)))
        return (1.0 - _TIE_BREAK) * smooth + _TIE_BREAK * order

    def with_consistency(
        self, counts: np.ndarray, null_counts: np.ndarray, weight: float = 1.0,
        value_range: tuple[float, float] = CONSISTENCY_RANGE,
    ) -> BetaMixture:
        """Attach the consistency ratio fitted on the observed and null consistency histograms
        (bins of :data:`CONSISTENCY_RANGE`). Only with an empirical null: its π0 is what
        separates the clean density from the null's; the two components' weight is no
        estimate of it (docs/noise_modelling.md, "The empirical null")."""
        if self.null is None:
            raise ValueError("the consistency ratio needs the empirical null (mixture.null_model)")
        self.consistency = ConsistencyRatio.fit(counts, null_counts, self.noise_ratio, weight,
                                                *value_range)
        return self

    def posterior(self, losses: np.ndarray, consistency: np.ndarray | None = None) -> np.ndarray:
        """P(clean | loss), fused with the neighbour consistency where both are at hand."""
        p = self.posterior_clean(losses)
        if self.consistency is None or consistency is None:
            return p
        if self.loss_evidence:
            return self.consistency.fuse(p, consistency)
        fused = self.consistency.fuse(np.full_like(p, 1.0 - self.noise_ratio), consistency)
        # the ratio's lookup is flat in places; the score's own order breaks those ties
        c = np.nan_to_num(np.asarray(consistency, dtype=np.float64), nan=self.consistency.lo)
        lo, hi = self.consistency.lo, self.consistency.hi
        return (1.0 - _TIE_BREAK) * fused + _TIE_BREAK * np.clip((c - lo) / (hi - lo), 0.0, 1.0)

    def component_densities(self, losses: np.ndarray) -> np.ndarray:
        """[n, 2] weighted densities of the clean and noisy components over raw losses (what
        a plot overlays on the loss histogram; they sum to the fitted loss density)."""
        x = self.normalise(losses)
        return np.exp(self._log_joint(x)) / (self.x_max - self.x_min)

    def keep_loss(self) -> float | None:
        """Raw loss below which the estimated clean share 1 − π0 of the pairs lies; None without
        an empirical null or when it reads no clean share (π0 = 1)."""
        if self.null is None or self.null.keep_x is None or self.null.noise_ratio >= 1.0:
            return None
        return float(self.x_min + self.null.keep_x * (self.x_max - self.x_min))

    def posterior_partial(self, losses: np.ndarray) -> np.ndarray:
        """P(partial noise | loss, noisy); zeros when no partial component was accepted."""
        x = self.normalise(losses)
        if self.split_alphas is None:
            return np.zeros_like(x)
        joint = beta_log_pdf(x, self.split_alphas, self.split_betas)
        joint = joint + np.log(self.split_weights)[None, :]
        return np.exp(joint[:, 0] - logsumexp(joint, axis=1))

    def noise_kind(self, losses: np.ndarray, clean_threshold: float = 0.5) -> np.ndarray:
        """ "clean" / "partial" / "complete" per loss."""
        p_clean = self.posterior_clean(losses)
        p_partial = self.posterior_partial(losses)
        out = np.where(p_partial >= 0.5, "partial", "complete").astype(object)
        out[p_clean >= clean_threshold] = "clean"
        return out.astype(str)

    # ----------------------------------------------------------------- (de)serialise
    def to_dict(self) -> dict[str, Any]:
        def lst(v: np.ndarray | None) -> list[float] | None:
            return None if v is None else [float(t) for t in v]

        return {
            "kind": "beta_mixture",
            "alphas": lst(self.alphas),
            "betas": lst(self.betas),
            "weights": lst(self.weights),
            "x_min": self.x_min,
            "x_max": self.x_max,
            "eps": self.eps,
            "split_alphas": lst(self.split_alphas),
            "split_betas": lst(self.split_betas),
            "split_weights": lst(self.split_weights),
            "noise_ratio": self.noise_ratio,
            "partial_ratio": self.partial_ratio,
            "log_likelihood": self.log_likelihood,
            "iterations": self.iterations,
            "gauss_means": lst(self.gauss_means),
            "gauss_stds": lst(self.gauss_stds),
            "gauss_weights": lst(self.gauss_weights),
            "fallback": self.fallback,
            "null": None if self.null is None else self.null.to_dict(),
            "null_fallback": self.null_fallback,
            "consistency": None if self.consistency is None else self.consistency.to_dict(),
            **({} if self.loss_evidence else {"loss_evidence": False}),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BetaMixture:
        def arr(key: str) -> np.ndarray | None:
            v = data.get(key)
            return None if v is None else np.asarray(v, dtype=np.float64)

        return cls(
            alphas=arr("alphas"),
            betas=arr("betas"),
            weights=arr("weights"),
            x_min=float(data["x_min"]),
            x_max=float(data["x_max"]),
            eps=float(data.get("eps", 1e-3)),
            split_alphas=arr("split_alphas"),
            split_betas=arr("split_betas"),
            split_weights=arr("split_weights"),
            log_likelihood=float(data.get("log_likelihood", float("nan"))),
            iterations=int(data.get("iterations", 0)),
            gauss_means=arr("gauss_means"),
            gauss_stds=arr("gauss_stds"),
            gauss_weights=arr("gauss_weights"),
            fallback=data.get("fallback"),
            null=EmpiricalNull.from_dict(data["null"]) if data.get("null") else None,
            null_fallback=data.get("null_fallback"),
            consistency=(
                ConsistencyRatio.from_dict(data["consistency"]) if data.get("consistency") else None
            ),
            loss_evidence=bool(data.get("loss_evidence", True)),
        )


def fit_raw(values: np.ndarray, cfg: MixtureConfig | None = None) -> BetaMixture:
    """Histogram the values over their own range and fit (tests, baselines)."""
    cfg = cfg or MixtureConfig()
    arr = np.asarray(values, dtype=np.float64)
    lo, hi = float(arr.min()), float(arr.max())
    if not hi > lo:
        raise ValueError("values are constant; a mixture needs spread")
    return BetaMixture.fit_histogram(histogram(arr, lo, hi, cfg.bins), lo, hi, cfg)
