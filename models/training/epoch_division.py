"""Score every training pair and divide it: in-sample, cross-fitted, with the empirical null.

What the robust trainer (:mod:`pairsift.models.training.trainer`) calls once per epoch, and what the
benchmarks call on finished heads. The division itself is :func:`pairsift.models.noise.division.divide`;
this module turns heads and embeddings into the scores, the null losses and the fitted mixture
it needs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pairsift.models.config import PairsiftConfig
from pairsift.models.noise.division import (
    Division,
    UncertaintyMemory,
    divide,
    division_uncertainty,
)
from pairsift.models.noise.fit import NoiseFit, fit_scores
from pairsift.models.noise.histogram import histogram
from pairsift.models.noise.mixture import BetaMixture
from pairsift.models.noise.neighbour_index import NeighbourIndex, anchor_rows
from pairsift.models.noise.null import derangement, with_swapped_captions
from pairsift.models.pairdata import PairEmbeddings
from pairsift.models.training.heads import ProjectionHeads
from pairsift.models.training.scoring import (
    ScoringState,
    build_scoring_state,
    loss_range,
    score_batch,
)


def _scorer(
    state: ScoringState, folds: np.ndarray | None = None
) -> Callable[[PairEmbeddings], dict[str, np.ndarray]]:
    """Scores any rows against ``state``'s fixed bank: the pairs, or their swapped null."""

    def score(pairs: PairEmbeddings) -> dict[str, np.ndarray]:
        return score_batch(
            state, pairs.image, pairs.text, pairs.text_tgt or None, pairs.text_src_ml, folds=folds
        )

    return score


@dataclass
class DividedPairs:
    """One division of a set of pairs: the labels, the mixture behind them, the scores."""

    division: Division
    mixture: BetaMixture | None
    scores: dict[str, np.ndarray]


def divide_pairs(
    heads: ProjectionHeads,
    data: PairEmbeddings,
    cfg: PairsiftConfig,
    seed: int,
    memory: UncertaintyMemory | None = None,
    method: str | None = None,
    neighbours: NeighbourScores | None = None,
) -> DividedPairs:
    """Score every pair against a fixed bank, fit the noise model on their histograms and
    divide (fusing ``neighbours``' consistency into the posterior when given)."""
    score = _scorer(build_scoring_state(heads, data, cfg.train, seed))
    scores = score(data)
    null = null_losses(score, data, cfg, seed, method)
    return divide_with(scores, cfg, memory, method, null, neighbours)


def divide_with(
    scores: dict[str, np.ndarray], cfg: PairsiftConfig, memory: UncertaintyMemory | None,
    method: str | None, null: np.ndarray | None, neighbours: NeighbourScores | None,
) -> DividedPairs:
    """:func:`divide_scores` with the pairs' neighbour consistency added to their scores."""
    if neighbours is not None:
        scores["consistency"] = neighbours.observed
    null_consistency = None if neighbours is None else neighbours.null
    return divide_scores(scores, cfg, memory, method, null, null_consistency)


def null_losses(
    score: Callable[[PairEmbeddings], dict[str, np.ndarray]],
    data: PairEmbeddings,
    cfg: PairsiftConfig,
    seed: int,
    method: str | None = None,
) -> np.ndarray | None:
    """Losses of ``data`` with its captions swapped (:mod:`pairsift.models.noise.null`), scored
    by ``score``; None where the division does not use them (only the beta mixture of the
    pairsift and bmm divisions does, with ``mixture.null_model`` "shuffled")."""
    div_method = method or cfg.division.method
    if not (
        cfg.mixture.null_model == "shuffled"
        and div_method in ("pairsift", "bmm")
        and len(data.image) >= 2
    ):
        return None
    return score(with_swapped_captions(data, seed))["loss"]


def crossfit_scorer(
    fold_heads: list[ProjectionHeads], folds: np.ndarray, data: PairEmbeddings,
    cfg: PairsiftConfig, seed: int,
) -> Callable[[PairEmbeddings], dict[str, np.ndarray]]:
    """Scores rows aligned with ``data`` by the heads of each row's fold, against one bank.

    Heads memorise the pairs they train on, noisy ones included, so on a small set the
    in-sample loss stops separating clean from noisy within a few epochs; a held-out loss
    cannot be memorised (cross-fitting, as in iterative noisy cross-validation). The bank is
    drawn once from ``data``'s real pairs, so the caption-swapped null rows are scored against
    the same bank as the pairs themselves (as in the in-sample division and the score pass).
    """
    state = build_scoring_state(fold_heads[0], data, cfg.train, seed)
    state.fold_heads = list(fold_heads)
    return _scorer(state, folds)


def crossfit_scores(
    fold_heads: list[ProjectionHeads], folds: np.ndarray, data: PairEmbeddings,
    cfg: PairsiftConfig, seed: int,
) -> dict[str, np.ndarray]:
    """Each pair of ``data`` scored by the heads of the fold that never trained on it."""
    return crossfit_scorer(fold_heads, folds, data, cfg, seed)(data)


def divide_scores(
    scores: dict[str, np.ndarray],
    cfg: PairsiftConfig,
    memory: UncertaintyMemory | None = None,
    method: str | None = None,
    null_losses: np.ndarray | None = None,
    null_consistency: np.ndarray | None = None,
) -> DividedPairs:
    """Divide in-memory scores through the one noise fit (:mod:`pairsift.models.noise.fit`).

    The scores' histograms give the :class:`NoiseFit` the pipeline would fit on them, and it
    labels the pairs. ``null_losses`` (caption-swapped pairs) give the mixture its empirical
    null; with it, ``scores["consistency"]`` and ``null_consistency`` fuse the neighbour
    consistency into the posterior. ``memory`` self-corrects u before the fit reads it.
    ``method`` "gmm" is NCR's division (a baseline that ranks all pairs at once).
    """
    dcfg = cfg.division if method is None else dataclasses.replace(cfg.division, method=method)
    if not NoiseFit.row_wise(dcfg):  # a baseline that ranks all pairs at once
        return DividedPairs(divide(scores, None, dcfg), None, scores)
    run_cfg = cfg.with_method(division=dcfg)
    u = division_uncertainty(scores, dcfg)
    if memory is not None and dcfg.self_correction and dcfg.method == "pairsift":
        u = memory.update(u)
    fit = fit_scores(scores, run_cfg, loss_range(cfg.train), null_losses, null_consistency, u)
    return DividedPairs(fit.label(scores, uncertainty=u), fit.mixture, scores)


def consistency_applies(cfg: PairsiftConfig, pairs: int) -> bool:
    """Whether neighbour consistency is computed for ``pairs`` fit pairs: it is on, there is
    an empirical null to fuse it with, and there are enough pairs to have neighbours."""
    return cfg.consistency.enabled and cfg.mixture.null_model == "shuffled" and pairs >= 4


@dataclass
class NeighbourScores:
    """Neighbour consistency of the training pairs and of a caption-swapped sample of them,
    with the index of anchors both were found among (the score pass reuses all three)."""

    observed: np.ndarray
    null: np.ndarray
    index: NeighbourIndex


def neighbour_consistency(
    data: PairEmbeddings, cfg: PairsiftConfig, seed: int
) -> NeighbourScores | None:
    """Consistency of every pair of ``data`` among anchors drawn from ``data`` itself (by key,
    :func:`anchor_rows`), and of caption-swapped pairs (at most ``max_anchors`` of them: they
    only fill a histogram). None when it is off, there is no empirical null to fuse with, or
    too few pairs. Each pair is searched once: the fit's division, the score pass and the
    null all read these values."""
    c = cfg.consistency
    n = len(data.image)
    if not consistency_applies(cfg, n):
        return None
    keys = data.keys if data.keys is not None else [str(i) for i in range(n)]
    anchors = anchor_rows(keys, c.max_anchors, seed + 1)
    index = NeighbourIndex.build(
        data.image[anchors], data.text[anchors], [keys[i] for i in anchors], c.neighbours,
        probes=c.probes, seed=seed,
    )
    position = np.full(n, -1, dtype=np.int64)
    position[anchors] = np.arange(len(anchors))
    observed = index.score(data.image, data.text, position, position)
    other = derangement(n, seed)
    rows = np.sort(np.random.default_rng(seed).choice(n, min(n, c.max_anchors), replace=False))
    null = index.score(
        data.image[rows], data.text[other[rows]], position[rows], position[other[rows]]
    )
    return NeighbourScores(observed, null, index)


def fold_ids(n: int, k: int, seed: int) -> np.ndarray:
    """Balanced random fold of each of n rows (0..k-1)."""
    return np.random.default_rng(seed).permutation(np.arange(n) % k)


def translation_trust(scores: dict[str, np.ndarray], cfg: PairsiftConfig) -> dict[str, np.ndarray]:
    """Per language, P(the translation agrees with its source) (NRF).

    A beta mixture on the disagreement (1 − translation consistency)/2, fitted like the loss
    mixture; the low-disagreement component's posterior is the trust. Languages without a
    consistency score (no multilingual source embedding) get none.
    """
    out: dict[str, np.ndarray] = {}
    for key in sorted(scores):
        if not key.startswith("translation_consistency_"):
            continue
        disagreement = (1.0 - np.asarray(scores[key], dtype=np.float64)) / 2.0
        counts = histogram(disagreement, 0.0, 1.0, cfg.mixture.bins)
        if np.count_nonzero(counts) < 2:
            continue
        mix_cfg = dataclasses.replace(cfg.mixture, partial_noise=False)
        mixture = BetaMixture.fit_histogram(counts, 0.0, 1.0, mix_cfg)
        out[key[len("translation_consistency_") :]] = mixture.posterior_clean(disagreement)
    return out
