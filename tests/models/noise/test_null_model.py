"""Empirical null: swapped-caption losses give the noise share and the clean posterior."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pairsift.models.config import MixtureConfig
from pairsift.models.noise.histogram import histogram
from pairsift.models.noise.mixture import BetaMixture
from pairsift.models.noise.null import EmpiricalNull, derangement, with_swapped_captions
from pairsift.models.pairdata import PairEmbeddings

# Shapes measured on tuxpaint's held-out (normalised) losses at 50 % noise: clean quantiles
# 5/25/50/75/95 % ≈ 0.35/0.52/0.63/0.71/0.81, a long left tail and a sharp right edge (not a
# beta: 0.82 − Gamma(2, 0.1) matches); noise ≈ 0.51/0.65/0.72/0.80/0.90, compact (a beta).
NOISE = (12.0, 4.7)


def _clean(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.clip(0.82 - rng.gamma(2.0, 0.1, n), 0.0, 1.0)


def _losses(rate: float, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n_noisy = int(rate * n)
    noisy = np.arange(n) < n_noisy
    x = np.where(noisy, rng.beta(*NOISE, n), _clean(rng, n))
    null = rng.beta(*NOISE, n)  # what swapped captions give: fresh draws of the noise
    return x, null, noisy


def _fit(x: np.ndarray, null: np.ndarray | None, cfg: MixtureConfig) -> BetaMixture:
    counts = histogram(x, 0.0, 1.0, cfg.bins)
    null_counts = None if null is None else histogram(null, 0.0, 1.0, cfg.bins)
    return BetaMixture.fit_histogram(counts, 0.0, 1.0, cfg, null_counts)


def test_derangement_moves_every_row_and_is_seeded() -> None:
    for n in (2, 3, 17, 500):
        d = derangement(n, seed=n)
        assert sorted(d.tolist()) == list(range(n))
        assert not np.any(d == np.arange(n))
    np.testing.assert_array_equal(derangement(50, 1), derangement(50, 1))
    assert not np.array_equal(derangement(50, 1), derangement(50, 2))
    with pytest.raises(ValueError):
        derangement(1, 0)


def test_swapped_captions_keep_images_and_keys() -> None:
    rng = np.random.default_rng(0)
    data = PairEmbeddings(
        image=rng.normal(size=(6, 4)), text=rng.normal(size=(6, 3)),
        text_tgt={"pt": rng.normal(size=(6, 3))}, text_src_ml=rng.normal(size=(6, 3)),
        keys=[f"k{i}" for i in range(6)],
    )
    swapped = with_swapped_captions(data, seed=3)
    other = derangement(6, 3)
    np.testing.assert_array_equal(swapped.image, data.image)
    assert swapped.keys == data.keys
    np.testing.assert_array_equal(swapped.text, data.text[other])
    np.testing.assert_array_equal(swapped.text_tgt["pt"], data.text_tgt["pt"][other])
    np.testing.assert_array_equal(swapped.text_src_ml, data.text_src_ml[other])


@pytest.mark.parametrize("rate", [0.2, 0.5, 0.8])
def test_null_recovers_the_noise_share_where_two_components_do_not(rate: float) -> None:
    x, null, noisy = _losses(rate, 4000, seed=int(rate * 10))
    with_null = _fit(x, null, MixtureConfig())
    two = _fit(x, None, MixtureConfig())
    assert with_null.null is not None and two.null is None
    # two components read 0.84-0.88 whatever the truth; Storey errs a little towards noise
    assert with_null.noise_ratio == pytest.approx(rate, abs=0.12)
    assert abs(with_null.noise_ratio - rate) < abs(two.noise_ratio - rate) - 0.05
    kept = with_null.posterior_clean(x) >= 0.5
    assert kept.any() and 1 - noisy[kept].mean() > 1 - rate  # better than keeping all
    post = with_null.posterior_clean(np.linspace(0, 1, 500))
    assert np.all(np.diff(post) <= 1e-12)


def test_null_state_round_trips_and_can_be_switched_off() -> None:
    x, null, _ = _losses(0.5, 2000, seed=7)
    model = _fit(x, null, MixtureConfig())
    restored = BetaMixture.from_dict(json.loads(json.dumps(model.to_dict())))
    grid = np.linspace(0, 1, 300)
    np.testing.assert_allclose(restored.posterior_clean(grid), model.posterior_clean(grid), atol=1e-5)
    assert restored.noise_ratio == model.noise_ratio
    off = _fit(x, null, MixtureConfig(null_model="none"))
    assert off.null is None
    with pytest.raises(ValueError, match="null_model"):
        _fit(x, null, MixtureConfig(null_model="bogus"))
    with pytest.raises(ValueError, match="share their bins"):
        EmpiricalNull.fit(np.ones(4), np.ones(5), np.linspace(0, 1, 4), 0.0, 1.0, 1e-3, 0.75)


def test_keep_loss_marks_the_estimated_clean_share() -> None:
    cfg = MixtureConfig()
    for rate in (0.2, 0.5):
        x, null, _ = _losses(rate, 4000, seed=11)
        model = _fit(x, null, cfg)
        cut = model.keep_loss()
        assert cut is not None
        # the share of observed losses at or below the cut is the clean share 1 − π0, up to
        # interpolation inside one histogram bin
        one_bin = histogram(x, 0.0, 1.0, cfg.bins).max() / x.size
        assert abs((x <= cut).mean() - (1.0 - model.noise_ratio)) <= one_bin
        back = BetaMixture.from_dict(json.loads(json.dumps(model.to_dict())))
        assert back.keep_loss() == pytest.approx(cut)


def test_keep_loss_is_absent_without_a_clean_share() -> None:
    x, null, _ = _losses(0.5, 2000, seed=12)
    cfg = MixtureConfig()
    assert _fit(x, None, cfg).keep_loss() is None  # no null: nothing to count with
    model = _fit(x, null, cfg)
    model.null.noise_ratio = 1.0  # a null reading every pair as noise leaves no share to keep
    assert model.keep_loss() is None
    state = model.null.to_dict()
    del state["keep_x"]  # a null saved before the cut existed still loads
    assert EmpiricalNull.from_dict(state).keep_x is None


def test_a_null_without_a_clean_share_leaves_the_posterior_to_the_components() -> None:
    rng = np.random.default_rng(13)
    x = np.concatenate([_clean(rng, 20), rng.beta(*NOISE, 1980)])  # 99 % noise
    null = rng.beta(*NOISE, 2000)
    grid = np.linspace(0.05, 0.95, 50)
    two = _fit(x, None, MixtureConfig())
    strict = _fit(x, null, MixtureConfig(null_max_ratio=1.0))
    capped = _fit(x, null, MixtureConfig())  # default 0.95
    assert capped.null.noise_ratio >= 0.95 and capped.null_fallback is not None
    assert strict.null_fallback is None
    # the noise share stays the null's; the posterior is the two components'
    assert capped.noise_ratio == capped.null.noise_ratio
    np.testing.assert_allclose(capped.posterior_clean(grid), two.posterior_clean(grid))
    # the null's own posterior gives nearly every pair p_clean ≈ 0: nothing to learn from
    assert strict.posterior_clean(x).mean() < 0.05 < capped.posterior_clean(x).mean()
    back = BetaMixture.from_dict(json.loads(json.dumps(capped.to_dict())))
    np.testing.assert_allclose(back.posterior_clean(grid), capped.posterior_clean(grid))
    with pytest.raises(ValueError, match="null_max_ratio"):
        _fit(x, null, MixtureConfig(null_max_ratio=0.0))
