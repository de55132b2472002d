"""The noise fit: one object, built from global histograms, that labels every pair.

``pairsift run`` sums :class:`NoiseHistograms` over all shards (a CombineGlobally of integer
counts), fits one :class:`NoiseFit` on them, and every pass-2 worker labels its shard with
it. The robust trainer's per-epoch division and every benchmark row named "pairsift" go
through the same two steps on in-memory scores, so there is one division, measured where it
ships. What the fit holds:

- the beta mixture on the loss histogram, with the empirical null (the losses of
  caption-swapped pairs) when ``mixture.null_model`` is "shuffled";
- the neighbour consistency fused into its posterior, where it applies;
- the global uncertainty threshold u_thr, read off the joint (loss, u) histogram;
- the fused noise-share cut (``keep_posterior``), read off the joint (loss, consistency)
  histogram;
- the division's switches (UCPM division, RCAR refurbishment, UML Fisher softening).

Binning makes every global value exact up to one bin and independent of how a runner splits
the pairs; integer counts make the merge order irrelevant.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from pairsift.models.config import DivisionConfig, PairsiftConfig
from pairsift.models.noise.consistency import CONSISTENCY_RANGE, share_threshold
from pairsift.models.noise.division import (
    Division,
    divide,
    division_uncertainty,
    share_cut,
    threshold_from_histogram,
)
from pairsift.models.noise.histogram import bin_centres, histogram, histogram2d
from pairsift.models.noise.mixture import BetaMixture

UNCERTAINTY_BINS = (128, 1000)  # (loss, u): u to 0.001; the loss axis only picks kept bins
ROW_WISE_METHODS = ("pairsift", "bmm", "none", "clip_score")
_MIXTURE_METHODS = ("pairsift", "bmm")


def _finite(values: np.ndarray | None) -> np.ndarray:
    if values is None:
        return np.zeros(0)
    v = np.asarray(values, dtype=np.float64).ravel()
    return v[np.isfinite(v)]


@dataclass
class NoiseHistograms:
    """Every count the noise fit reads, over the unique pairs (partials add up).

    ``loss_consistency`` counts the pairs with a finite consistency only; empty arrays of
    the right shape stand for "not measured".
    """

    loss_range: tuple[float, float]
    loss: np.ndarray
    null_loss: np.ndarray
    loss_uncertainty: np.ndarray
    consistency: np.ndarray
    null_consistency: np.ndarray
    loss_consistency: np.ndarray

    @classmethod
    def empty(
        cls, loss_range: tuple[float, float], loss_bins: int, consistency_bins: int
    ) -> NoiseHistograms:
        def zeros(*shape: int) -> np.ndarray:
            return np.zeros(shape, dtype=np.int64)

        return cls(
            (float(loss_range[0]), float(loss_range[1])), zeros(loss_bins), zeros(loss_bins),
            zeros(*UNCERTAINTY_BINS), zeros(consistency_bins), zeros(consistency_bins),
            zeros(UNCERTAINTY_BINS[0], consistency_bins),
        )

    @classmethod
    def of(
        cls,
        loss_range: tuple[float, float],
        cfg: PairsiftConfig,
        loss: np.ndarray,
        uncertainty: np.ndarray,
        null_loss: np.ndarray | None = None,
        consistency: np.ndarray | None = None,
        null_consistency: np.ndarray | None = None,
    ) -> NoiseHistograms:
        """The histograms of one set of unique pairs (a shard, or all of a trainer's pairs)."""
        out = cls.empty(loss_range, cfg.mixture.bins, cfg.consistency.bins)
        lo, hi = out.loss_range
        loss = np.asarray(loss, dtype=np.float64)
        if loss.size == 0:
            return out
        out.loss = histogram(loss, lo, hi, cfg.mixture.bins)
        out.null_loss = histogram(_finite(null_loss), lo, hi, cfg.mixture.bins)
        out.loss_uncertainty = histogram2d(
            loss, uncertainty, (lo, hi), (0.0, 1.0), UNCERTAINTY_BINS
        )
        c_bins = cfg.consistency.bins
        out.consistency = histogram(_finite(consistency), *CONSISTENCY_RANGE, c_bins)
        out.null_consistency = histogram(_finite(null_consistency), *CONSISTENCY_RANGE, c_bins)
        if consistency is not None and np.size(consistency) == loss.size:
            c = np.asarray(consistency, dtype=np.float64)
            finite = np.isfinite(c)
            out.loss_consistency = histogram2d(
                loss[finite], c[finite], (lo, hi), CONSISTENCY_RANGE,
                (UNCERTAINTY_BINS[0], c_bins),
            )
        return out

    def __add__(self, other: NoiseHistograms) -> NoiseHistograms:
        if self.loss_range != other.loss_range:
            raise ValueError(f"histograms over {self.loss_range} and {other.loss_range}")
        return NoiseHistograms(
            self.loss_range, *(getattr(self, f) + getattr(other, f) for f in _COUNT_FIELDS)
        )

    @property
    def pairs(self) -> int:
        return int(self.loss.sum())

    def to_dict(self) -> dict[str, Any]:
        return {"loss_range": list(self.loss_range),
                **{f: getattr(self, f).tolist() for f in _COUNT_FIELDS}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NoiseHistograms:
        counts = [np.asarray(data[f], dtype=np.int64) for f in _COUNT_FIELDS]
        return cls((float(data["loss_range"][0]), float(data["loss_range"][1])), *counts)


_COUNT_FIELDS = tuple(f.name for f in dataclasses.fields(NoiseHistograms) if f.name != "loss_range")


@dataclass
class NoiseFit:
    """What labels a pair: the fitted mixture, the global cuts, and the division's switches."""

    division: DivisionConfig
    mixture: BetaMixture | None = None
    uncertainty_threshold: float | None = None
    keep_posterior: float | None = None
    pairs: int = 0  # unique pairs the fit saw

    @classmethod
    def fit(cls, hists: NoiseHistograms, cfg: PairsiftConfig) -> NoiseFit:
        """Fit the mixture (with its null and the fused consistency) and the global cuts."""
        division = dataclasses.replace(cfg.division)
        cls.check_method(division)
        out = cls(division, pairs=hists.pairs)
        lo, hi = hists.loss_range
        # fitted for every method: the noise ratio and the partial/complete kind are reported
        # whatever divides (a single loss value has no mixture to fit)
        if np.count_nonzero(hists.loss) >= 2:
            null = hists.null_loss if cfg.mixture.null_model == "shuffled" else None
            if null is not None and null.sum() < 2:  # one pair per shard: no swap possible
                null = None
            out.mixture = BetaMixture.fit_histogram(hists.loss, lo, hi, cfg.mixture, null)
            _fuse_consistency(out.mixture, hists, cfg)
            out.keep_posterior = _keep_posterior(out.mixture, hists, division)
        if division.method in _MIXTURE_METHODS:
            out.uncertainty_threshold = threshold_from_histogram(
                hists.loss_uncertainty, lo, hi, out.mixture, division
            )
        return out

    @staticmethod
    def row_wise(division: DivisionConfig) -> bool:
        """Whether the division labels each pair on its own (given the fit), as a pipeline
        that labels shard by shard needs; GMM and keep-a-fraction rank all pairs at once."""
        if division.method == "clip_score":
            return division.similarity_threshold is not None
        return division.method in ROW_WISE_METHODS

    @staticmethod
    def check_method(division: DivisionConfig) -> None:
        """Refuse a division that cannot label pair by pair (it ranks all pairs at once)."""
        if NoiseFit.row_wise(division):
            return
        if division.method not in ROW_WISE_METHODS:
            raise ValueError(
                f"division.method {division.method!r} ranks all pairs at once; a noise fit "
                f"labels pair by pair with one of {', '.join(ROW_WISE_METHODS)}"
            )
        raise ValueError("division.method clip_score labels pair by pair only with "
                         "division.similarity_threshold set")

    @property
    def noise_ratio(self) -> float | None:
        return None if self.mixture is None else float(self.mixture.noise_ratio)

    def label(
        self, scores: dict[str, np.ndarray], uncertainty: np.ndarray | None = None
    ) -> Division:
        """Divide scored pairs; ``uncertainty`` replaces the scores' u (self-correction)."""
        return divide(
            scores, self.mixture, self.division, uncertainty=uncertainty,
            uncertainty_threshold=self.uncertainty_threshold, keep_posterior=self.keep_posterior,
        )

    def noise_kind(self, losses: np.ndarray) -> np.ndarray:
        """partial / complete / clean per loss; "" without a mixture."""
        if self.mixture is None:
            return np.full(len(losses), "", dtype=object)
        return self.mixture.noise_kind(losses)

    def to_dict(self) -> dict[str, Any]:
        return {
            "division": dataclasses.asdict(self.division),
            "mixture": None if self.mixture is None else self.mixture.to_dict(),
            "uncertainty_threshold": self.uncertainty_threshold,
            "keep_posterior": self.keep_posterior,
            "pairs": self.pairs,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NoiseFit:
        mixture = data.get("mixture")
        return cls(
            DivisionConfig(**data["division"]),
            None if mixture is None else BetaMixture.from_dict(mixture),
            data.get("uncertainty_threshold"), data.get("keep_posterior"), int(data.get("pairs", 0)),
        )


def fit_scores(
    scores: dict[str, np.ndarray],
    cfg: PairsiftConfig,
    loss_range: tuple[float, float],
    null_loss: np.ndarray | None = None,
    null_consistency: np.ndarray | None = None,
    uncertainty: np.ndarray | None = None,
) -> NoiseFit:
    """The noise fit of in-memory scores: their histograms, then :meth:`NoiseFit.fit`.

    What the trainer's per-epoch division and the scoring of finished heads use; the pipeline
    sums the same histograms over its shards instead.
    """
    u = division_uncertainty(scores, cfg.division) if uncertainty is None else uncertainty
    hists = NoiseHistograms.of(
        loss_range, cfg, scores["loss"], u, null_loss, scores.get("consistency"), null_consistency
    )
    return NoiseFit.fit(hists, cfg)


def _fuse_consistency(mixture: BetaMixture, hists: NoiseHistograms, cfg: PairsiftConfig) -> None:
    """Attach the consistency ratio where it applies: consistency on, an empirical null
    fitted, at least 2 observed and 2 null values."""
    if not cfg.consistency.enabled or mixture.null is None:
        return
    if hists.consistency.sum() < 2 or hists.null_consistency.sum() < 2:
        return
    mixture.with_consistency(hists.consistency, hists.null_consistency, cfg.consistency.weight)


def _keep_posterior(
    mixture: BetaMixture, hists: NoiseHistograms, division: DivisionConfig
) -> float | None:
    """The fused posterior below which a pair falls outside the null's clean count, read off
    the joint (loss, consistency) histogram at the cells' centres; None where no fused count
    applies (loss-only posteriors cut at the loss :func:`share_cut` reads off the null)."""
    if mixture.consistency is None or share_cut(mixture, division) is None:
        return None
    counts = hists.loss_consistency.astype(np.float64)
    if counts.sum() <= 0:
        return None
    losses = bin_centres(*hists.loss_range, counts.shape[0])
    values = bin_centres(*CONSISTENCY_RANGE, counts.shape[1])
    p = mixture.posterior(np.repeat(losses, values.size), np.tile(values, losses.size))
    return share_threshold(p, counts.ravel(), 1.0 - mixture.noise_ratio)
