"""The NCR and DECL baselines: their losses and divisions against the papers' formulas
computed directly, the co-divide wiring, and short end-to-end runs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import digamma, gammaln
from sklearn.mixture import GaussianMixture

from pairsift.models.config import PairsiftConfig
from pairsift.models.metrics import detection_auc, recall_at_k
from pairsift.models.noise.division import Division
from pairsift.models.pairdata import PairEmbeddings
from pairsift.models.synthetic import make_pairs
from pairsift.models.training import baseline_losses as BL
from pairsift.models.training import recipes
from pairsift.models.training.baselines import (
    DECLRecipe,
    NCRRecipe,
    decl_division,
    ncr_division,
    ncr_per_sample_loss,
    unlabelled_starts,
)
from pairsift.models.training.epoch_division import DividedPairs
from pairsift.models.training.heads import ProjectionHeads
from pairsift.models.training.recipe_base import Batch
from pairsift.models.training.trainer import train


def _cfg(recipe: str, epochs: int = 8, **train_values) -> PairsiftConfig:
    cfg = PairsiftConfig(recipe=recipe)
    cfg.train.epochs, cfg.train.warmup_epochs = epochs, 2
    cfg.train.head_dim, cfg.train.batch_size = 32, 128
    for key, value in train_values.items():
        setattr(cfg.train, key, value)
    return cfg


def _heads(data: PairEmbeddings, seed: int = 0) -> ProjectionHeads:
    torch.manual_seed(seed)
    return ProjectionHeads(data.image.shape[1], data.text.shape[1], 16).eval()


def _embedded(heads: ProjectionHeads, data: PairEmbeddings) -> tuple[np.ndarray, np.ndarray]:
    with torch.no_grad():
        img = heads.image(torch.from_numpy(data.image)).double().numpy()
        txt = heads.text(torch.from_numpy(data.text)).double().numpy()
    return img, txt


def _direct_mean_hinge(s: np.ndarray, m: float) -> np.ndarray:
    """NCR's eval-time per-sample loss, cell by cell: Σ_j≠i [m − s_ii + s_ij]_+ / B both ways."""
    b = len(s)
    out = np.zeros(b)
    for i in range(b):
        for j in range(b):
            if j != i:
                out[i] += max(0.0, m - s[i, i] + s[i, j]) / b + max(0.0, m - s[i, i] + s[j, i]) / b
    return out


def test_ncr_divides_on_its_own_per_sample_loss_with_its_gmm() -> None:
    pairs = make_pairs(60, 0.3, seed=2)
    heads = _heads(pairs.data)
    cfg = _cfg("ncr", batch_size=64)  # one batch holds every pair: the batch order is moot
    img, txt = _embedded(heads, pairs.data)
    direct = _direct_mean_hinge(np.clip(img @ txt.T, -1, 1), cfg.train.margin)
    losses = ncr_per_sample_loss(heads, pairs.data, cfg.train, seed=5)
    np.testing.assert_allclose(losses, direct, atol=1e-5)
    divided = NCRRecipe().divide(heads, pairs.data, cfg, seed=5)
    x = ((losses - losses.min()) / (losses.max() - losses.min())).reshape(-1, 1)
    gmm = GaussianMixture(2, max_iter=10, tol=1e-2, reg_covar=5e-4, random_state=0).fit(x)
    p_clean = gmm.predict_proba(x)[:, int(np.argmin(gmm.means_.ravel()))]
    np.testing.assert_allclose(divided.division.p_clean, p_clean, atol=1e-9)
    np.testing.assert_array_equal(divided.division.label == "clean", p_clean > 0.5)
    # smaller batches: every pair's loss is the mean hinge among its batch mates alone
    small = ncr_per_sample_loss(heads, pairs.data, _cfg("ncr", batch_size=16).train, seed=5)
    assert not np.allclose(small, losses) and np.all(small >= 0)


def test_ncr_leaves_a_hundredth_unlabelled_when_the_gmm_finds_no_noise() -> None:
    losses = np.random.default_rng(0).gamma(2.0, 1.0, size=300)
    div = ncr_division(losses, threshold=-1.0)  # a threshold every posterior clears
    p = div.p_clean
    noisy = div.label == "noisy"
    np.testing.assert_array_equal(noisy, p <= np.sort(p)[300 // 100])
    assert 1 <= noisy.sum() <= 5


def test_ncr_prediction_is_the_papers_rescaled_margin_gap() -> None:
    s = np.random.default_rng(1).uniform(-0.5, 0.9, size=(12, 12))
    m = 0.2
    p = np.clip(m - _direct_mean_hinge(s, m) / 2, 0.0, m)
    p = np.clip(p / np.sort(p)[::-1][: 12 // 10 + 1].mean(), 0.0, 1.0)
    np.testing.assert_allclose(BL.ncr_prediction(torch.from_numpy(s), m).numpy(), p, atol=1e-12)


def _ncr_batch(n: int, labelled: torch.Tensor) -> tuple[Batch, ProjectionHeads]:
    pairs = make_pairs(n, 0.0, seed=3)
    heads = _heads(pairs.data, seed=1)
    b = Batch(torch.from_numpy(pairs.data.image).requires_grad_(), torch.from_numpy(pairs.data.text),
              {}, {"clean": labelled, "hard": torch.zeros(n, dtype=torch.bool),
                   "noisy": ~labelled, "p_clean": torch.full((n,), 0.8)})
    return b, heads


def test_ncr_trains_its_unlabelled_pairs_only_from_half_way() -> None:
    cfg = _cfg("ncr", epochs=10)  # warm-up 2: unlabelled pairs from epoch 2 + 8 // 2 = 6
    assert unlabelled_starts(cfg.train) == 6
    labelled = torch.arange(24) < 12
    for epoch, trained in ((5, False), (6, True)):
        b, heads = _ncr_batch(24, labelled)
        NCRRecipe().batch_loss(heads, b, cfg, epoch).backward()
        grad = b.img.grad.abs().sum(dim=1)
        assert bool((grad[labelled] > 0).any())
        assert bool((grad[~labelled] > 0).any()) == trained


def test_co_divide_trains_each_net_on_the_other_nets_division(monkeypatch) -> None:
    """Each net's GMM division goes to the *other* net (NCR's co-divide), with it as peer."""
    posterior: dict[int, float] = {}
    seen: list[tuple[int, float, int | None]] = []

    class Spy(NCRRecipe):
        def divide(self, heads, data, cfg, seed, memory=None, neighbours=None):
            p = posterior.setdefault(id(heads), 0.9 - 0.1 * len(posterior))
            n = len(data)
            div = Division(np.full(n, "clean"), np.full(n, p), np.full(n, p), np.zeros(n))
            return DividedPairs(div, None, {})

        def batch_loss(self, heads, b, cfg, epoch):
            if b.div is not None:
                seen.append((id(heads), float(b.div["p_clean"][0]), id(b.peer)))
            return super().batch_loss(heads, b, cfg, epoch)

    monkeypatch.setitem(recipes.RECIPES, "ncr", Spy())
    pairs = make_pairs(64, 0.3, seed=4)
    train(pairs.data, _cfg("ncr", epochs=4, batch_size=32), divide_last=False)
    assert len(posterior) == 2 and seen
    (a, pa), (b, pb) = posterior.items()
    other = {a: (pb, b), b: (pa, a)}
    assert {h for h, _, _ in seen} == {a, b}
    for heads, p, peer in seen:
        assert (p, peer) == (pytest.approx(other[heads][0]), other[heads][1])


def _direct_decl_risk(s: np.ndarray, tau: float, lam: float, matched: np.ndarray) -> np.ndarray:
    """DECL's loss, row by row, from the paper's formulas (scipy's ψ and ln Γ)."""
    ev = np.exp(np.tanh(s) / tau)
    b = len(s)
    out = np.zeros(b)
    for alpha_all in (ev + 1.0, ev.T + 1.0):
        for i in range(b):
            alpha = alpha_all[i]
            y = np.zeros(b)
            y[i] = float(matched[i])
            total = alpha.sum()
            risk = sum((y[j] - alpha[j] / total) ** 2
                       + alpha[j] * (total - alpha[j]) / (total**2 * (total + 1)) for j in range(b))
            tilde = (alpha - 1.0) * (1.0 - y) + 1.0
            st = tilde.sum()
            kl = (gammaln(st) - gammaln(tilde).sum() - math.lgamma(b)
                  + ((tilde - 1.0) * (digamma(tilde) - digamma(st))).sum())
            out[i] += risk + lam * kl
    return out


def test_decl_risk_is_the_papers_formula_and_differentiable() -> None:
    s = np.random.default_rng(2).uniform(-1, 1, size=(5, 5))
    matched = np.array([True, False, True, True, False])
    got = BL.decl_risk(torch.from_numpy(s), 0.3, 0.2, torch.from_numpy(matched))
    np.testing.assert_allclose(got.numpy(), _direct_decl_risk(s, 0.3, 0.2, matched), rtol=1e-10)
    sims = torch.from_numpy(s).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda x: BL.decl_risk(x, 0.3, 0.2, torch.from_numpy(matched)), (sims,))


def test_robust_dynamic_hinge_and_its_schedule() -> None:
    s = np.random.default_rng(3).uniform(-1, 1, size=(6, 6))
    m, k = 0.2, 2
    want = np.zeros(6)
    for i in range(6):
        row = sorted((max(0.0, m - s[i, i] + s[i, j]) for j in range(6) if j != i), reverse=True)
        col = sorted((max(0.0, m - s[i, i] + s[j, i]) for j in range(6) if j != i), reverse=True)
        want[i] = (sum(row[:k]) + sum(col[:k])) / k
    got = BL.robust_dynamic_hinge(torch.from_numpy(s), m, k).numpy()
    np.testing.assert_allclose(got, want, atol=1e-12)
    ks = [BL.decl_negatives(e, 3, 128, 5) for e in range(5)]
    assert ks[0] == 128 and ks[0] > ks[1] > ks[2] > ks[3] == ks[4] == 5


def test_decl_division_flags_pairs_without_evidence() -> None:
    rng = np.random.default_rng(4)
    img = rng.normal(size=(40, 16)).astype(np.float32)
    txt = img + 0.1 * rng.normal(size=img.shape).astype(np.float32)
    noisy = np.arange(40) % 4 == 0
    txt[noisy] = rng.normal(size=(int(noisy.sum()), 16))  # captions of nothing in the set
    data = PairEmbeddings(img, txt)
    heads = ProjectionHeads(16, 16, 16, identity=True).eval()
    cfg = _cfg("decl", batch_size=64)
    div = decl_division(heads, data, cfg.train, seed=0).division
    np.testing.assert_array_equal(div.label == "noisy", noisy)
    assert div.uncertainty[noisy].min() > div.uncertainty[~noisy].max()
    assert div.p_clean[noisy].max() < div.p_clean[~noisy].min()
    # the rule itself: the own cell holds the row's largest share of e + eᵀ
    e, f = _embedded(heads, data)
    ev = np.exp(np.tanh(np.clip(e @ f.T, -1, 1)) / cfg.train.evidence_tau)
    both = ev + ev.T
    np.testing.assert_array_equal(div.label == "clean", both.argmax(axis=1) == np.arange(40))


def _rsum(heads: ProjectionHeads, data: PairEmbeddings) -> float:
    img, txt = _embedded(heads, data)
    return recall_at_k(img, txt)["rsum"]


@pytest.fixture(scope="module")
def half_noisy():
    torch.set_num_threads(1)
    train_set, test_set = make_pairs(600, 0.5, seed=0), make_pairs(300, 0.0, seed=1)
    plain = train(train_set.data, _cfg("contrastive", batch_size=32)).heads
    return train_set, test_set, _rsum(plain, test_set.data)


@pytest.mark.parametrize("recipe", ["ncr", "decl"])
def test_each_baseline_trains_end_to_end_and_beats_chance(recipe: str, half_noisy) -> None:
    """Half the pairs noisy, batches of 32 (the papers' methods need steps more than pairs):
    each divides far better than chance and retrieves better than InfoNCE on every pair."""
    train_set, test_set, plain_rsum = half_noisy
    result = train(train_set.data, _cfg(recipe, batch_size=32))
    assert result.division is not None
    assert all(np.isfinite(h["train_loss"]) for h in result.history)
    assert all("n_clean" in h for h in result.history[2:])
    assert detection_auc(train_set.is_noisy, 1.0 - result.division.p_clean) > 0.9
    rsum = _rsum(result.heads, test_set.data)
    chance = 2 * 100 * (1 + 5 + 10) / len(test_set.data)  # rSum of random rankings
    assert rsum > 10 * chance and rsum > plain_rsum + 30


def test_decl_takes_per_pair_weights_and_ncr_refuses_them() -> None:
    pairs = make_pairs(64, 0.3, seed=6)
    weights = np.where(pairs.is_noisy, 0.1, 1.0)
    result = train(pairs.data, _cfg("decl", epochs=3, batch_size=32), weights=weights)
    assert np.isfinite(result.history[-1]["train_loss"])
    assert isinstance(recipes.training_recipe("decl"), DECLRecipe)
    with pytest.raises(ValueError, match="weights"):
        train(pairs.data, _cfg("ncr", epochs=3), weights=weights)
