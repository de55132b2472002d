"""Clean / hard / noisy division with soft labels (UCPM + RCAR + UML).

``divide`` works on the scalar per-pair scores of :func:`pairsift.models.training.scoring.score_batch`
(so the pipeline can divide without the embeddings). Methods (``cfg.method``):

- ``pairsift``: Uncertainty Guided Division. u < u_thr → determined: clean when the own
  caption holds the largest belief *and* the beta mixture agrees (p_clean ≥ clean_threshold;
  a determined pair the mixture doubts becomes hard rather than clean), noisy when another
  caption holds more belief and the mixture agrees (else hard: near-duplicate captions in the
  bank can outscore a true match). u ≥ u_thr → hard with soft label b_self, unless the
  mixture finds it more likely noise than clean (p_clean < ``noisy_posterior``, 0.5): without
  evidence either way the loss decides, and keeping it would put likely noise in the shards.
  The opinion is the dual-view (Dempster–Shafer) one when ``*_dual`` scores exist and
  ``dual_view`` is on. ``mixture_agrees=False`` gives UCPM's rule unchanged.
  ``keep_rule`` (default "both"): with an empirical null a pair is also noisy when its loss
  is above the (1 − π0) quantile of the losses ("noise_share" alone: only then; the opinion
  still sorts the kept pairs into clean and hard). Where clean and noisy losses overlap
  heavily the Bayes cut p_clean ≥ ½ can keep far more pairs than the π0 it came from says
  are clean; the count caps that. Where they separate well but π0 reads low the count alone
  would keep too many, and the Bayes cut caps that (docs/noise_modelling.md, section 3). With a fused posterior (the mixture
  carries a :class:`~pairsift.models.noise.consistency.ConsistencyRatio` and the scores a
  ``consistency``), p_clean is P(clean | loss, neighbour consistency) and the count keeps the
  top 1 − π0 by it (``keep_posterior``) instead of cutting the loss.
  u_thr is relative by default: the ``uncertainty_quantile`` of u over the pairs the mixture
  keeps (:func:`relative_threshold`), because u's absolute scale moves with K, τ and how far
  the heads spread cosines; trained heads put every pair above an absolute ½ and then no pair
  was ever determined. ``uncertainty_quantile=None`` uses ``uncertainty_threshold`` as is.
- ``bmm``: the beta mixture alone (clean when p_clean ≥ clean_threshold).
- ``gmm``: NCR-style two-component Gaussian mixture on the per-pair loss.
- ``clip_score``: keep the top ``keep_fraction`` by similarity (DataComp-style filter; a
  global rank, so call it on all scores at once), or, with ``similarity_threshold`` set,
  every pair at or above that similarity (row-wise).
- ``none``: every pair clean.

Soft labels (clean and noisy pairs): RCAR refurbishment y = p_clean·1 + (1 − p_clean)·p_model
with p_model = α_self/S, then (UML) Fisher softening ỹ = ½ + w·(y − ½). Hard pairs keep
ỹ = b_self (UCPM).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn.mixture import GaussianMixture

from pairsift.models.config import DivisionConfig
from pairsift.models.noise.consistency import share_threshold
from pairsift.models.noise.evidential import fisher_soften
from pairsift.models.noise.histogram import bin_centres
from pairsift.models.noise.mixture import BetaMixture
from pairsift.models.noise.reasons import Cuts, Rule, labels_of

LABELS = ("clean", "hard", "noisy")


@dataclass
class Division:
    """Per-pair outcome: ``label`` (clean/hard/noisy), ``p_clean``, ``soft_label``, ``uncertainty``.

    ``uncertainty_threshold`` is the u_thr the division used (NaN for methods without one).
    ``rule`` names, per pair, the rule that decided its label (:class:`~pairsift.models.noise.
    reasons.Rule` codes) and ``cuts`` the global values it compared against: together with
    the pair's own numbers they are its reason (:func:`~pairsift.models.noise.reasons.explain`).
    """

    label: np.ndarray
    p_clean: np.ndarray
    soft_label: np.ndarray
    uncertainty: np.ndarray
    uncertainty_threshold: float = float("nan")
    rule: np.ndarray | None = None
    cuts: Cuts = field(default_factory=Cuts)

    def counts(self) -> dict[str, int]:
        return {name: int((self.label == name).sum()) for name in LABELS}

    @property
    def kept(self) -> np.ndarray:
        return self.label != "noisy"


class UncertaintyMemory:
    """Per-pair uncertainty across epochs (UCPM Uncertainty Self-Correction).

    A pair whose u moved by more than ``fluctuation_threshold`` over the last ``window``
    epochs is unstable: its u is replaced by the window mean before division, so one noisy
    epoch cannot flip it across the threshold. Stable pairs keep their current u.
    """

    def __init__(self, size: int, window: int = 3, fluctuation_threshold: float = 0.1) -> None:
        if window < 2:
            raise ValueError("self-correction needs a window of at least 2 epochs")
        self.size = int(size)
        self.window = int(window)
        self.fluctuation_threshold = float(fluctuation_threshold)
        self.history: list[np.ndarray] = []

    def update(self, uncertainty: np.ndarray) -> np.ndarray:
        """Record this epoch's u and return the corrected u."""
        u = np.asarray(uncertainty, dtype=np.float64)
        if u.shape != (self.size,):
            raise ValueError(f"memory holds {self.size} pairs, got u of shape {u.shape}")
        self.history.append(u.copy())
        self.history = self.history[-self.window :]
        return self.corrected()

    def fluctuating(self) -> np.ndarray:
        if len(self.history) < 2:
            return np.zeros(self.size, dtype=bool)
        stack = np.stack(self.history)
        return (stack.max(axis=0) - stack.min(axis=0)) > self.fluctuation_threshold

    def corrected(self) -> np.ndarray:
        if not self.history:
            raise ValueError("memory is empty")
        current = self.history[-1]
        if len(self.history) < 2:
            return current.copy()
        smooth = np.stack(self.history).mean(axis=0)
        return np.where(self.fluctuating(), smooth, current)

    def to_dict(self) -> dict[str, object]:
        return {
            "size": self.size,
            "window": self.window,
            "fluctuation_threshold": self.fluctuation_threshold,
            "history": [h.tolist() for h in self.history],
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> UncertaintyMemory:
        mem = cls(int(data["size"]), int(data["window"]), float(data["fluctuation_threshold"]))
        mem.history = [np.asarray(h, dtype=np.float64) for h in data["history"]]
        return mem


def _get(scores: dict[str, np.ndarray], key: str) -> np.ndarray:
    if key not in scores:
        raise KeyError(f"division needs score {key!r}; have {sorted(scores)}")
    return np.asarray(scores[key], dtype=np.float64)


def _view_suffix(scores: dict[str, np.ndarray], cfg: DivisionConfig) -> str:
    return "_dual" if cfg.dual_view and "belief_dual" in scores else ""


def view_uncertainty(scores: dict[str, np.ndarray], cfg: DivisionConfig) -> np.ndarray:
    """The u of the division's view: the dual-view one when present and ``dual_view`` is on."""
    return _get(scores, "uncertainty" + _view_suffix(scores, cfg))


def division_uncertainty(scores: dict[str, np.ndarray], cfg: DivisionConfig) -> np.ndarray:
    """The u the division reads and the noise fit histograms: :func:`view_uncertainty`, with
    the single-view u standing in where a dual-view u is missing (a pair without a
    translation), so neither ever sees a NaN."""
    u = view_uncertainty(scores, cfg)
    single = _get(scores, "uncertainty")
    return np.where(np.isfinite(u), u, single)


@dataclass
class OpinionView:
    """The evidential opinion the division reads for every pair: the image–English view's,
    or the dual view's (Dempster–Shafer over all views) when present and ``dual_view`` is on.
    The score columns' names and suffixes are read here, once."""

    belief: np.ndarray
    uncertainty: np.ndarray
    top: np.ndarray  # the own caption holds the largest belief
    belief_neg_max: np.ndarray | None = None  # the strongest rival's belief
    match_prob: np.ndarray | None = None  # α_self / S: the model's match probability
    alpha_self: np.ndarray | None = None
    alpha_total: np.ndarray | None = None

    @classmethod
    def of(cls, scores: dict[str, np.ndarray], cfg: DivisionConfig) -> OpinionView:
        sfx = _view_suffix(scores, cfg)

        def optional(name: str) -> np.ndarray | None:
            return _get(scores, name + sfx) if name + sfx in scores else None

        return cls(
            _get(scores, "belief" + sfx), _get(scores, "uncertainty" + sfx),
            _get(scores, "top" + sfx) > 0.5, optional("belief_neg_max"),
            optional("match_prob"), optional("alpha_self"), optional("alpha_total"),
        )


def _p_clean(
    scores: dict[str, np.ndarray], mixture: BetaMixture | None, view: OpinionView
) -> np.ndarray:
    if mixture is not None:
        consistency = scores.get("consistency")
        return mixture.posterior(_get(scores, "loss"), None if consistency is None else
                                 np.asarray(consistency, dtype=np.float64))
    # Without a mixture the opinion itself estimates the match: expected probability relative
    # to an even split between the own caption and its strongest rival.
    if view.belief_neg_max is None:
        raise KeyError("division without a mixture needs score 'belief_neg_max'")
    own, rival, unc = view.belief, view.belief_neg_max, view.uncertainty
    return np.clip((own + 0.5 * unc) / np.maximum(own + rival + unc, 1e-12), 0.0, 1.0)


def _soft_labels(p_clean: np.ndarray, view: OpinionView, cfg: DivisionConfig) -> np.ndarray:
    target = p_clean.copy()
    if cfg.refurbish and view.match_prob is not None:
        target = p_clean + (1.0 - p_clean) * view.match_prob
    if cfg.fisher_soften and view.alpha_self is not None and view.alpha_total is not None:
        classes = int(round(float(np.median(view.uncertainty * view.alpha_total))))
        target = fisher_soften(
            torch.from_numpy(target),
            torch.from_numpy(view.alpha_self),
            torch.from_numpy(view.alpha_total),
            classes,
        ).numpy()
    return np.clip(target, 0.0, 1.0)


def _gmm_posterior(loss: np.ndarray, seed: int = 0) -> np.ndarray:
    """NCR: 2-component GMM on min–max normalised losses; clean = lower-mean component."""
    x = loss.reshape(-1, 1)
    span = float(x.max() - x.min())
    x = (x - x.min()) / span if span > 0 else np.zeros_like(x)
    gmm = GaussianMixture(n_components=2, max_iter=10, tol=1e-2, reg_covar=5e-4, random_state=seed)
    gmm.fit(x)
    return gmm.predict_proba(x)[:, int(np.argmin(gmm.means_.ravel()))]


def relative_threshold(unc: np.ndarray, p_clean: np.ndarray, cfg: DivisionConfig) -> float:
    """u_thr as the ``uncertainty_quantile`` of u over the pairs the mixture keeps.

    Those pairs are the reference because "determined" should sort the kept pairs into clean
    and hard; over all pairs the share of noise would move the cut. No kept pair: all pairs.
    """
    if cfg.uncertainty_quantile is None:
        return float(cfg.uncertainty_threshold)
    if not 0.0 < cfg.uncertainty_quantile < 1.0:
        raise ValueError(f"uncertainty_quantile must be in (0, 1), got {cfg.uncertainty_quantile}")
    finite = np.isfinite(unc)
    ref = unc[finite & (p_clean >= cfg.clean_threshold)]
    if ref.size == 0:
        ref = unc[finite]
    if ref.size == 0:
        return float(cfg.uncertainty_threshold)
    return float(np.quantile(ref, cfg.uncertainty_quantile))


def threshold_from_histogram(
    counts: np.ndarray, loss_lo: float, loss_hi: float, mixture: BetaMixture | None,
    cfg: DivisionConfig,
) -> float:
    """:func:`relative_threshold` from a joint (loss, u) histogram, u binned over [0, 1].

    For a pipeline that divides shard by shard: the histogram sums over all shards, so every
    shard divides with one global u_thr, exact up to binning (a loss bin is kept when the
    posterior at its centre is; u is read at the right edge of the quantile's bin).
    """
    if cfg.uncertainty_quantile is None:
        return float(cfg.uncertainty_threshold)
    counts = np.asarray(counts, dtype=np.float64)
    loss_bins, u_bins = counts.shape
    centres = bin_centres(loss_lo, loss_hi, loss_bins)
    kept_rows = (
        mixture.posterior_clean(centres) >= cfg.clean_threshold
        if mixture is not None
        else np.ones(loss_bins, dtype=bool)
    )
    per_u = counts[kept_rows].sum(axis=0)
    if per_u.sum() <= 0:
        per_u = counts.sum(axis=0)
    if per_u.sum() <= 0:
        return float(cfg.uncertainty_threshold)
    cumulative = np.cumsum(per_u) / per_u.sum()
    index = int(np.searchsorted(cumulative, cfg.uncertainty_quantile, side="left"))
    return float((min(index, u_bins - 1) + 1) / u_bins)


KEEP_RULES = ("noise_share", "posterior", "both")


def share_cut(mixture: BetaMixture | None, cfg: DivisionConfig) -> float | None:
    """The loss above which the count ("noise_share", "both") drops a pair; None where no
    count applies: keep_rule "posterior", no empirical null, or a null reading π0 = 1, which
    leaves no clean share to count (then the posterior rule alone decides)."""
    if cfg.keep_rule not in KEEP_RULES:
        raise ValueError(f"unknown division keep_rule {cfg.keep_rule!r}; choose from {KEEP_RULES}")
    if cfg.keep_rule == "posterior" or mixture is None:
        return None
    return mixture.keep_loss()


def fused(mixture: BetaMixture | None, scores: dict[str, np.ndarray]) -> bool:
    """Whether the division's posterior is the loss fused with the neighbour consistency."""
    return mixture is not None and mixture.consistency is not None and "consistency" in scores


def divide(
    scores: dict[str, np.ndarray],
    mixture: BetaMixture | None,
    cfg: DivisionConfig,
    uncertainty: np.ndarray | None = None,
    uncertainty_threshold: float | None = None,
    keep_posterior: float | None = None,
) -> Division:
    """Label every pair clean / hard / noisy and give it a soft label (see module doc).

    ``uncertainty`` replaces the scores' u (the trainer passes its self-corrected u,
    :class:`UncertaintyMemory`); by default :func:`division_uncertainty`.

    ``uncertainty_threshold`` fixes u_thr (fitted globally, for shard-wise division); without
    it u_thr comes from these scores (:func:`relative_threshold`). ``keep_posterior`` likewise
    fixes the noise-share cut of a fused posterior (:func:`share_threshold` on these scores
    without it); a loss-only posterior cuts at the loss :func:`share_cut` reads off the null.
    """
    unc = division_uncertainty(scores, cfg) if uncertainty is None else np.asarray(uncertainty)
    if cfg.method in ("none", "clip_score", "gmm"):
        return _baseline_division(scores, cfg, unc)
    if cfg.method not in ("bmm", "pairsift"):
        raise ValueError(f"unknown division method {cfg.method!r}")
    view = OpinionView.of(scores, cfg)
    p_clean = _p_clean(scores, mixture, view)
    soft = _soft_labels(p_clean, view, cfg)
    cuts = Cuts(clean_threshold=cfg.clean_threshold, noisy_posterior=cfg.noisy_posterior,
                mixture_agrees=cfg.mixture_agrees)
    if cfg.method == "bmm" or not cfg.use_uncertainty:
        clean = p_clean >= cfg.clean_threshold
        rule = np.where(clean, Rule.CLEAN_POSTERIOR.value, Rule.NOISY_POSTERIOR.value)
        return Division(np.where(clean, "clean", "noisy"), p_clean, soft, unc, rule=rule, cuts=cuts)
    if uncertainty_threshold is None:
        uncertainty_threshold = relative_threshold(unc, p_clean, cfg)
    cuts.uncertainty_threshold = uncertainty_threshold
    rule = _guided_rules(scores, view.top, mixture, cfg, unc, p_clean, cuts, keep_posterior)
    label = labels_of(rule)
    soft = np.where(label == "hard", view.belief, soft)
    return Division(label, p_clean, np.clip(soft, 0.0, 1.0), unc, uncertainty_threshold,
                    rule=rule, cuts=cuts)


def _guided_rules(
    scores: dict[str, np.ndarray], top: np.ndarray, mixture: BetaMixture | None,
    cfg: DivisionConfig, unc: np.ndarray, p_clean: np.ndarray, cuts: Cuts,
    keep_posterior: float | None,
) -> np.ndarray:
    """UCPM's uncertainty-guided division, with the mixture's agreement and the null's count
    (see the module doc): determined pairs are clean or noisy by their opinion, the rest
    hard, and the noise-share cut drops what the empirical null counts as noise. Returns each
    pair's deciding :class:`Rule` code (its label is the code's first part); of the rules
    that drop a pair, the noise-share cut is named first. The cuts used go into ``cuts``."""
    n = unc.shape[0]
    determined = unc < cuts.uncertainty_threshold
    agrees = p_clean >= cfg.clean_threshold if cfg.mixture_agrees else np.ones(n, dtype=bool)
    rule = np.full(n, Rule.HARD_UNCERTAIN.value, dtype=object)
    rule[determined & top] = np.where(agrees[determined & top], Rule.CLEAN_CERTAIN.value,
                                      Rule.HARD_MIXTURE_DOUBTS.value)
    rule[determined & ~top] = Rule.HARD_RIVAL.value
    noisy = np.zeros(n, dtype=bool)
    cut = share_cut(mixture, cfg)
    if cut is not None and fused(mixture, scores):  # rank by the fused posterior instead
        assert mixture is not None
        if keep_posterior is None:
            keep_posterior = share_threshold(p_clean, None, 1.0 - mixture.noise_ratio)
        cuts.keep_posterior = float(keep_posterior)
        noisy = p_clean < keep_posterior
        rule[noisy] = Rule.NOISY_SHARE.value
    elif cut is not None:  # the null's count decides kept or not; the opinion, clean or hard
        cuts.loss_cut = float(cut)
        noisy = _get(scores, "loss") > cut
        rule[noisy] = Rule.NOISY_LOSS_CUT.value
    cuts.posterior_rules = cut is None or cfg.keep_rule == "both"
    if cuts.posterior_rules:
        doubts = p_clean < cfg.clean_threshold if cfg.mixture_agrees else np.ones(n, dtype=bool)
        rule[determined & ~top & doubts & ~noisy] = Rule.NOISY_RIVAL.value
        rule[~determined & (p_clean < cfg.noisy_posterior) & ~noisy] = Rule.NOISY_UNLIKELY.value
    return rule.astype(str)


def _baseline_division(
    scores: dict[str, np.ndarray], cfg: DivisionConfig, unc: np.ndarray
) -> Division:
    """The baselines' divisions: none (all clean), the CLIP-score filter, NCR's GMM."""
    n = unc.shape[0]
    cuts = Cuts(clean_threshold=cfg.clean_threshold, similarity_threshold=cfg.similarity_threshold)
    if cfg.method == "none":
        ones = np.ones(n)
        return Division(np.full(n, "clean"), ones, ones.copy(), unc,
                        rule=np.full(n, Rule.CLEAN_UNFILTERED.value), cuts=cuts)
    if cfg.method == "gmm":
        p_clean = _gmm_posterior(_get(scores, "loss"))
        clean = p_clean > cfg.clean_threshold
        return Division(np.where(clean, "clean", "noisy"), p_clean, p_clean.copy(), unc,
                        rule=_rules(clean, Rule.CLEAN_GMM, Rule.NOISY_GMM), cuts=cuts)
    sim = _get(scores, "similarity")
    if cfg.similarity_threshold is not None:  # row-wise: usable shard by shard
        kept = sim >= cfg.similarity_threshold
        p_clean = np.clip((sim + 1.0) / 2.0, 0.0, 1.0)
        return Division(np.where(kept, "clean", "noisy"), p_clean, kept.astype(float), unc,
                        rule=_rules(kept, Rule.CLEAN_SIMILARITY, Rule.NOISY_SIMILARITY), cuts=cuts)
    if not 0.0 < cfg.keep_fraction <= 1.0:
        raise ValueError("keep_fraction must be in (0, 1]")
    order = np.argsort(-sim, kind="stable")
    kept = np.zeros(n, dtype=bool)
    kept[order[: int(round(cfg.keep_fraction * n))]] = True
    rank = np.empty(n)
    rank[order] = np.arange(n)
    p_clean = 1.0 - rank / max(n - 1, 1)
    return Division(np.where(kept, "clean", "noisy"), p_clean, kept.astype(float), unc,
                    rule=_rules(kept, Rule.CLEAN_SIMILARITY, Rule.NOISY_SIMILARITY), cuts=cuts)


def _rules(kept: np.ndarray, clean: Rule, noisy: Rule) -> np.ndarray:
    return np.where(kept, clean.value, noisy.value)
