"""Neighbour consistency: the score, its null, the likelihood ratio and its fusion."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from pairsift.models.config import DivisionConfig, MixtureConfig, PairsiftConfig
from pairsift.models.metrics import detection_auc
from pairsift.models.noise.consistency import (
    CONSISTENCY_RANGE,
    ConsistencyRatio,
    NeighbourIndex,
    share_threshold,
)
from pairsift.models.noise.division import divide
from pairsift.models.noise.histogram import histogram
from pairsift.models.noise.mixture import BetaMixture
from pairsift.models.noise.null import derangement
from pairsift.models.pairdata import PairEmbeddings
from pairsift.models.training.epoch_division import neighbour_consistency


def _clustered_pairs(
    n: int, rate: float, seed: int, clusters: int = 12, dim: int = 16
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images and captions of ``clusters`` topics seen through two different random maps;
    the first ``rate`` share of the pairs carry a caption of another pair."""
    rng = np.random.default_rng(seed)
    topic = rng.integers(0, clusters, n)
    centres = rng.normal(size=(clusters, dim))
    to_image, to_text = rng.normal(size=(dim, dim)), rng.normal(size=(dim, 24))
    image = (centres[topic] + 0.4 * rng.normal(size=(n, dim))) @ to_image
    caption_topic = topic.copy()
    noisy = np.arange(n) < int(rate * n)
    caption_topic[noisy] = rng.integers(0, clusters, int(noisy.sum()))
    text = (centres[caption_topic] + 0.4 * rng.normal(size=(n, dim))) @ to_text
    return image.astype(np.float32), text.astype(np.float32), noisy & (caption_topic != topic)


def _index(image: np.ndarray, text: np.ndarray, k: int = 10) -> NeighbourIndex:
    return NeighbourIndex.build(image, text, [f"k{i}" for i in range(len(image))], k)


def test_consistency_ranks_mismatched_captions_below_matched_ones() -> None:
    image, text, noisy = _clustered_pairs(600, 0.4, seed=0)
    index = _index(image, text)
    own = np.arange(len(image))
    score = index.score(image, text, own, own)
    assert detection_auc(noisy, -score) > 0.9
    # caption-swapped pairs are distributed like the mismatched ones, not like the matched
    other = derangement(len(image), 1)
    null = index.score(image, text[other], own, own[other])
    assert abs(np.median(null) - np.median(score[noisy])) < 0.1
    assert np.median(score[~noisy]) > np.median(null) + 0.3


def test_consistency_matches_a_brute_force_neighbour_mean() -> None:
    image, text, _ = _clustered_pairs(80, 0.3, seed=1)
    index = _index(image, text, k=5)
    exclude = np.arange(80)
    got = index.score(image, text, exclude, exclude)
    v = image - index.image_mean
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    t = text - index.text_mean
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    sim_v, sim_t = v @ index.image.T, t @ index.text.T
    want = np.empty(80)
    for i in range(80):
        by_image = [j for j in np.argsort(-sim_v[i]) if j != i][:5]
        by_text = [j for j in np.argsort(-sim_t[i]) if j != i][:5]
        want[i] = sim_t[i, by_image].mean() + sim_v[i, by_text].mean()
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_own_anchor_is_excluded_and_rows_score_alike_in_any_batch() -> None:
    image, text, _ = _clustered_pairs(200, 0.3, seed=2)
    index = _index(image, text)
    rows = index.rows_of([f"k{i}" for i in range(200)] + ["not-an-anchor"])
    assert rows[-1] == -1 and np.array_equal(rows[:-1], np.arange(200))
    with_self = index.score(image, text)
    without = index.score(image, text, rows[:-1], rows[:-1])
    assert np.all(with_self > without)  # its own caption would count as a neighbour's
    part = index.score(image[50:60], text[50:60], rows[50:60], rows[50:60])
    np.testing.assert_allclose(part, without[50:60], atol=1e-6)


def test_index_round_trips_through_disk(tmp_path) -> None:
    image, text, _ = _clustered_pairs(100, 0.3, seed=3)
    index = _index(image, text)
    index.save(str(tmp_path / "neighbours"))
    assert NeighbourIndex.exists(str(tmp_path / "neighbours"))
    loaded = NeighbourIndex.load(str(tmp_path / "neighbours"))
    rows = loaded.rows_of(index.keys)
    np.testing.assert_array_equal(
        loaded.score(image, text, rows, rows), index.score(image, text, rows, rows)
    )


def test_too_few_anchors_give_nan_not_an_error() -> None:
    image, text, _ = _clustered_pairs(2, 0.0, seed=4)
    assert np.all(np.isnan(_index(image, text).score(image, text)))


def _ratio_counts(pi0: float, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    noisy = rng.random(n) < pi0
    observed = np.where(noisy, rng.normal(0.0, 0.1, n), rng.normal(0.45, 0.12, n))
    null = rng.normal(0.0, 0.1, n)
    bins = PairsiftConfig().consistency.bins
    return (histogram(observed, *CONSISTENCY_RANGE, bins), histogram(null, *CONSISTENCY_RANGE, bins),
            observed)


def test_ratio_favours_noise_near_the_null_and_clean_far_from_it() -> None:
    counts, null_counts, _ = _ratio_counts(0.5, 4000, seed=0)
    ratio = ConsistencyRatio.fit(counts, null_counts, 0.5)
    grid = np.linspace(-1.0, 1.5, 500)
    lam = ratio.ratio(grid)
    assert np.all(np.diff(lam) <= 1e-12)  # a higher consistency is never more noisy
    assert ratio.ratio(np.array([0.0]))[0] > 3.0
    assert ratio.ratio(np.array([0.5]))[0] < 0.2
    assert ratio.ratio(np.array([np.nan]))[0] == 1.0  # no score: no evidence
    half = dataclasses.replace(ratio, weight=0.5)
    np.testing.assert_allclose(half.ratio(grid), lam**0.5)
    assert ConsistencyRatio.from_dict(ratio.to_dict()).ratio(grid) == pytest.approx(lam, rel=1e-5)
    with pytest.raises(ValueError, match="weight"):
        ConsistencyRatio.fit(counts, null_counts, 0.5, weight=2.0)


def test_fused_posterior_beats_either_view_when_they_err_independently() -> None:
    rng = np.random.default_rng(5)
    n, pi0 = 4000, 0.5
    noisy = np.arange(n) < n // 2
    loss = np.where(noisy, rng.beta(12, 5, n), rng.beta(7, 6, n))  # overlapping views
    null_loss = rng.beta(12, 5, n)
    consistency = np.where(noisy, rng.normal(0.0, 0.1, n), rng.normal(0.18, 0.1, n))
    null_consistency = rng.normal(0.0, 0.1, n)
    cfg = MixtureConfig()
    mixture = BetaMixture.fit_histogram(
        histogram(loss, 0.0, 1.0, cfg.bins), 0.0, 1.0, cfg, histogram(null_loss, 0.0, 1.0, cfg.bins)
    )
    bins = PairsiftConfig().consistency.bins
    mixture.with_consistency(
        histogram(consistency, *CONSISTENCY_RANGE, bins),
        histogram(null_consistency, *CONSISTENCY_RANGE, bins),
    )
    fused = mixture.posterior(loss, consistency)
    auc_loss = detection_auc(noisy, -mixture.posterior_clean(loss))
    auc_consistency = detection_auc(noisy, -consistency)
    assert detection_auc(noisy, -fused) > max(auc_loss, auc_consistency) + 0.03
    restored = BetaMixture.from_dict(mixture.to_dict())
    np.testing.assert_allclose(restored.posterior(loss, consistency), fused, atol=1e-5)
    assert abs(mixture.noise_ratio - pi0) < 0.1


def test_consistency_needs_the_empirical_null() -> None:
    rng = np.random.default_rng(0)
    mixture = BetaMixture.fit_histogram(
        histogram(rng.beta(2, 5, 500), 0.0, 1.0, 256), 0.0, 1.0, MixtureConfig(bins=256)
    )
    counts, null_counts, _ = _ratio_counts(0.5, 500, seed=1)
    with pytest.raises(ValueError, match="empirical null"):
        mixture.with_consistency(counts, null_counts)


def test_share_threshold_counts_pairs_or_weighted_cells() -> None:
    p = np.array([0.9, 0.1, 0.5, 0.7, 0.3, 0.8, 0.2, 0.6, 0.4, 0.05])
    assert share_threshold(p, None, 0.3) == 0.7  # keeps 0.9, 0.8, 0.7
    assert share_threshold(p, None, 1.0) == 0.05
    cells, counts = np.array([0.9, 0.5, 0.1]), np.array([2.0, 5.0, 3.0])
    assert share_threshold(cells, counts, 0.2) == 0.9
    assert share_threshold(cells, counts, 0.5) == 0.5
    assert share_threshold(cells, counts, 0.71) == 0.1


def test_fused_division_keeps_the_nulls_clean_count_and_a_fixed_cut_reproduces_it() -> None:
    rng = np.random.default_rng(7)
    n = 3000
    noisy = np.arange(n) < n // 2
    loss = np.where(noisy, rng.beta(12, 5, n), rng.beta(7, 6, n))
    consistency = np.where(noisy, rng.normal(0.0, 0.1, n), rng.normal(0.2, 0.1, n))
    cfg = MixtureConfig()
    mixture = BetaMixture.fit_histogram(
        histogram(loss, 0.0, 1.0, cfg.bins), 0.0, 1.0, cfg,
        histogram(rng.beta(12, 5, n), 0.0, 1.0, cfg.bins),
    )
    bins = PairsiftConfig().consistency.bins
    mixture.with_consistency(
        histogram(consistency, *CONSISTENCY_RANGE, bins),
        histogram(rng.normal(0.0, 0.1, n), *CONSISTENCY_RANGE, bins),
    )
    scores = {"loss": loss, "consistency": consistency, "uncertainty": rng.random(n),
              "top": np.ones(n), "belief": rng.random(n)}
    div_cfg = DivisionConfig(keep_rule="noise_share", refurbish=False, fisher_soften=False)
    division = divide(scores, mixture, div_cfg)
    assert abs(division.kept.sum() - round((1 - mixture.noise_ratio) * n)) <= 1
    loss_only = divide({k: v for k, v in scores.items() if k != "consistency"}, mixture, div_cfg)
    precision = (~noisy[division.kept]).mean()
    assert precision > (~noisy[loss_only.kept]).mean() + 0.02
    cut = share_threshold(division.p_clean, None, 1 - mixture.noise_ratio)
    fixed = divide(scores, mixture, div_cfg, keep_posterior=cut)
    np.testing.assert_array_equal(fixed.label, division.label)


def test_training_pairs_get_consistency_only_with_the_null_and_when_on() -> None:
    image, text, noisy = _clustered_pairs(300, 0.5, seed=8)
    data = PairEmbeddings(image=image, text=text)
    cfg = PairsiftConfig()
    scores = neighbour_consistency(data, cfg, seed=0)
    assert scores is not None and scores.observed.shape == (300,)
    assert detection_auc(noisy, -scores.observed) > 0.9
    assert np.median(scores.null) < np.median(scores.observed[~noisy]) - 0.3
    off = cfg.with_method(consistency=dataclasses.replace(cfg.consistency, enabled=False))
    assert neighbour_consistency(data, off, seed=0) is None
    no_null = cfg.with_method(mixture=dataclasses.replace(cfg.mixture, null_model="none"))
    assert neighbour_consistency(data, no_null, seed=0) is None
