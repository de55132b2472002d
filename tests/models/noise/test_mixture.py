"""Beta mixture on histograms: parameter recovery, monotone posterior, partial/complete split."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pairsift.models.config import MixtureConfig
from pairsift.models.noise.histogram import histogram
from pairsift.models.noise.mixture import BetaMixture, fit_raw


def test_histogram_counts_clip_and_merge() -> None:
    values = np.array([-5.0, 0.0, 0.49, 0.5, 0.99, 1.0, 7.0])
    counts = histogram(values, 0.0, 1.0, 2)
    assert counts.dtype == np.int64
    assert counts.tolist() == [3, 4]  # -5 clipped into bin 0, 1.0 and 7.0 into the last bin
    a, b = values[:3], values[3:]
    merged = histogram(a, 0.0, 1.0, 2) + histogram(b, 0.0, 1.0, 2)
    assert merged.tolist() == counts.tolist()
    with pytest.raises(ValueError):
        histogram(np.array([np.nan]), 0.0, 1.0, 4)
    with pytest.raises(ValueError):
        histogram(values, 1.0, 1.0, 4)


@pytest.mark.parametrize(
    ("clean", "noisy", "weight"),
    [((2.0, 8.0), (7.0, 3.0), 0.6), ((2.0, 20.0), (8.0, 8.0), 0.5), ((1.5, 10.0), (6.0, 2.0), 0.8)],
)
def test_recovers_known_mixture(clean, noisy, weight) -> None:
    rng = np.random.default_rng(0)
    n = 40_000
    n_clean = int(weight * n)
    x = np.concatenate([rng.beta(*clean, n_clean), rng.beta(*noisy, n - n_clean)])
    # fix the histogram range to [0, 1] and pin the occupied range to it
    x[0], x[-1] = 0.0, 1.0
    model = BetaMixture.fit_histogram(histogram(x, 0.0, 1.0, 2048), 0.0, 1.0, MixtureConfig())
    assert model.noise_ratio == pytest.approx(1 - weight, abs=0.02)
    assert model.alphas[0] == pytest.approx(clean[0], rel=0.15)
    assert model.betas[0] == pytest.approx(clean[1], rel=0.15)
    assert model.alphas[1] == pytest.approx(noisy[0], rel=0.15)
    assert model.betas[1] == pytest.approx(noisy[1], rel=0.15)
    truth = np.arange(n) >= n_clean
    accuracy = np.mean((model.posterior_clean(x) < 0.5) == truth)
    assert accuracy > 0.9


def test_posterior_monotone_and_serialisable() -> None:
    rng = np.random.default_rng(1)
    # a wide clean component: the raw posterior would rise again in the far tail
    x = np.concatenate([rng.beta(1.2, 3.0, 5000), rng.beta(30.0, 30.0, 5000)])
    model = fit_raw(x)
    grid = np.linspace(x.min() - 1, x.max() + 1, 5000)
    post = model.posterior_clean(grid)
    assert np.all(np.diff(post) <= 1e-12)
    assert post[0] > 0.9 and 0.0 <= post.min()
    restored = BetaMixture.from_dict(json.loads(json.dumps(model.to_dict())))
    np.testing.assert_allclose(restored.posterior_clean(grid), post)
    assert restored.noise_ratio == pytest.approx(model.noise_ratio)


def test_narrow_clean_component_keeps_its_left_tail_clean() -> None:
    """Held-out losses look like this: clean pairs narrow, noise broad with a long left tail.

    The raw posterior falls again at the lowest losses (the broad component outlives the narrow
    one); a pair with a lower loss than the clean mode must still come out clean.
    """
    rng = np.random.default_rng(4)
    clean = rng.beta(40.0, 45.0, 4400)  # mean 0.47, sd 0.05
    noisy = rng.beta(4.0, 2.0, 3600)  # mean 0.67, sd 0.18, reaches far left
    x = np.concatenate([clean, noisy])
    model = fit_raw(x)
    centre = model.alphas[0] / (model.alphas[0] + model.betas[0])
    grid = np.linspace(model.x_min, model.x_max, 4000)
    raw = model._raw_posterior(model.normalise(grid))
    assert raw[0] < raw.max() - 0.2  # the fit itself is not monotone at the left end
    post = model.posterior_clean(grid)
    assert np.all(np.diff(post) <= 1e-12)
    below_mode = model.normalise(clean) <= centre
    assert np.mean(model.posterior_clean(clean[below_mode]) >= 0.5) > 0.99
    truth = np.arange(x.size) >= clean.size
    kept = model.posterior_clean(x) >= 0.5
    # as accurate as the true densities allow (the two populations overlap a lot)
    from scipy.stats import beta

    bayes = 0.55 * beta.pdf(x, 40.0, 45.0) >= 0.45 * beta.pdf(x, 4.0, 2.0)
    assert np.mean(kept == ~truth) > np.mean(bayes == ~truth) - 0.03


def test_posterior_left_of_a_narrow_clean_mode_is_not_pooled_away() -> None:
    """The mixture fitted on a demo run's held-out losses (epoch 3 of 10, 800 pairs).

    Clean: narrow Beta(26.6, 28.0), weight 0.3; noise: broad Beta(3.9, 2.5). The raw posterior
    peaks near the clean mean above ½ and falls at lower losses; pooling that fall into the
    peak (isotonic regression) had capped every pair below ½, so the division kept none.
    """
    model = BetaMixture(
        alphas=np.array([26.56, 3.9]), betas=np.array([28.03, 2.52]),
        weights=np.array([0.3, 0.7]), x_min=0.0, x_max=1.0,
    )
    grid = np.linspace(0.01, 0.99, 981)
    raw = model._raw_posterior(grid)
    centre = 26.56 / (26.56 + 28.03)
    assert raw.max() > 0.55 and raw[0] < 0.1
    post = model.posterior_clean(grid)
    assert np.all(np.diff(post) <= 1e-12)
    left = grid <= centre
    assert post[left].min() >= raw[np.searchsorted(grid, centre)] - 2e-3 > 0.5
    assert np.all(post <= raw.max() + 2e-3)
    assert post[-1] < 0.01  # the right end stays noise


def test_partial_vs_complete_split() -> None:
    rng = np.random.default_rng(2)
    clean = rng.beta(2, 14, 10_000)
    partial = rng.beta(6, 6, 4_000)
    complete = rng.beta(14, 2, 6_000)
    model = fit_raw(np.concatenate([clean, partial, complete]))
    assert model.split_weights is not None
    assert model.partial_ratio == pytest.approx(0.2, abs=0.06)
    assert np.mean(model.noise_kind(clean) == "clean") > 0.9
    assert np.mean(model.noise_kind(partial) == "partial") > 0.7
    assert np.mean(model.noise_kind(complete) == "complete") > 0.85


def test_no_split_on_two_populations() -> None:
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.beta(2, 10, 8000), rng.beta(10, 2, 8000)])
    model = fit_raw(x)
    assert model.split_weights is None and model.partial_ratio == 0.0
    kinds = model.noise_kind(x)
    assert set(np.unique(kinds)) <= {"clean", "complete"}
    assert not fit_raw(x, MixtureConfig(partial_noise=False)).split_weights


def test_rejects_degenerate_histograms() -> None:
    cfg = MixtureConfig()
    with pytest.raises(ValueError):
        BetaMixture.fit_histogram(np.array([0, 10, 0, 0]), 0.0, 1.0, cfg)
    with pytest.raises(ValueError):
        BetaMixture.fit_histogram(np.array([1, -1, 3]), 0.0, 1.0, cfg)
    with pytest.raises(ValueError):
        fit_raw(np.ones(10))


def test_posterior_keeps_the_loss_order_when_populations_overlap() -> None:
    """One hump of overlapping clean/noisy losses: whatever the fit, p_clean must rank pairs
    exactly as their loss does (no plateau of ties), so detection never falls below the loss."""
    rng = np.random.default_rng(1)
    clean = rng.normal(0.8, 0.35, 700)
    noisy = rng.normal(1.2, 0.35, 700)
    losses = np.clip(np.concatenate([clean, noisy]), 0.0, None)
    model = fit_raw(losses)
    post = model.posterior_clean(losses)
    assert len(np.unique(post)) == len(np.unique(losses))
    order = np.argsort(losses)
    assert np.all(np.diff(post[order]) <= 0)
    truth = np.r_[np.zeros(700, bool), np.ones(700, bool)]
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(truth, 1 - post) == pytest.approx(roc_auc_score(truth, losses), abs=1e-9)
    assert np.all((post >= 0) & (post <= 1))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_degenerate_beta_fit_falls_back_to_gaussians(seed: int) -> None:
    """One hump of 50/50 overlapping losses: the beta fit explains the tails with a tiny or
    flat 'component' (noise ratio ~0.96); the Gaussian fallback estimates the true 0.5."""
    rng = np.random.default_rng(seed)
    losses = np.clip(np.concatenate([rng.normal(0.8, 0.35, 700), rng.normal(1.2, 0.35, 700)]), 0, None)
    beta_only = fit_raw(losses, MixtureConfig(fallback="none"))
    assert beta_only.fallback is None and beta_only.noise_ratio > 0.85
    model = fit_raw(losses)
    assert model.fallback is not None
    assert model.noise_ratio == pytest.approx(0.5, abs=0.1)
    restored = BetaMixture.from_dict(json.loads(json.dumps(model.to_dict())))
    assert restored.fallback == model.fallback
    np.testing.assert_allclose(restored.posterior_clean(losses), model.posterior_clean(losses))


def test_separated_populations_keep_the_beta_fit() -> None:
    rng = np.random.default_rng(0)
    model = fit_raw(np.concatenate([rng.beta(2, 12, 6000), rng.beta(9, 3, 4000)]))
    assert model.fallback is None
    assert model.noise_ratio == pytest.approx(0.4, abs=0.03)
