"""Evidential opinions, Dempster–Shafer combination and the Fisher softening derived in docs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pairsift.models.noise.evidential import (
    combine,
    dempster_shafer,
    dirichlet_fisher,
    discount,
    evidence,
    fisher_soften,
    fisher_weight,
    kl_to_uniform,
    match_information,
    opinion,
)


def test_opinion_hand_values() -> None:
    sims = torch.tensor([[0.5, 0.0, -0.5]], dtype=torch.float64)
    tau = 0.1
    e = [math.exp(math.tanh(s) / tau) for s in (0.5, 0.0, -0.5)]
    strength = sum(e) + 3
    op = opinion(sims, tau)
    np.testing.assert_allclose(op.alpha[0].numpy(), [v + 1 for v in e])
    np.testing.assert_allclose(op.belief[0].numpy(), [v / strength for v in e])
    assert float(op.uncertainty[0]) == pytest.approx(3 / strength)
    assert float(op.belief.sum() + op.uncertainty.sum()) == pytest.approx(1.0)


def test_opinion_bounded_at_extremes() -> None:
    sims = torch.tensor([[1e6, -1e6, -1e6], [-1e6, -1e6, -1e6], [1.0, 1.0, 1.0]])
    op = opinion(sims, 0.1)
    assert torch.isfinite(op.alpha).all() and torch.isfinite(op.uncertainty).all()
    assert 0 < float(op.uncertainty[0]) < 1e-3  # confident
    assert float(op.uncertainty[1]) > 0.999  # nearly vacuous
    with pytest.raises(ValueError):
        evidence(sims, 0.0)


def test_dempster_shafer_hand_example() -> None:
    b1, u1 = torch.tensor([[0.6, 0.2]]), torch.tensor([0.2])
    b2, u2 = torch.tensor([[0.3, 0.3]]), torch.tensor([0.4])
    # conflict = 0.6*0.3 + 0.2*0.3 = 0.24; scale = 0.76
    belief, unc = dempster_shafer(b1, u1, b2, u2)
    np.testing.assert_allclose(
        belief[0].numpy(), [(0.18 + 0.24 + 0.06) / 0.76, (0.06 + 0.08 + 0.06) / 0.76], rtol=1e-6
    )
    assert float(unc[0]) == pytest.approx(0.08 / 0.76, rel=1e-6)
    assert float(belief.sum() + unc.sum()) == pytest.approx(1.0, rel=1e-6)


def test_combination_with_vacuous_opinion_is_identity() -> None:
    op = opinion(torch.tensor([[0.7, 0.1, -0.2, 0.3]], dtype=torch.float64), 0.1)
    vacuous_b = torch.zeros_like(op.belief)
    belief, unc = dempster_shafer(
        op.belief, op.uncertainty, vacuous_b, torch.ones(1, dtype=torch.float64)
    )
    np.testing.assert_allclose(belief.numpy(), op.belief.numpy())
    np.testing.assert_allclose(unc.numpy(), op.uncertainty.numpy())
    both = combine(op, op)
    assert float(both.uncertainty[0]) < float(op.uncertainty[0])  # agreement sharpens
    np.testing.assert_allclose(both.alpha.sum(-1).numpy() * both.uncertainty.numpy(), [4.0])


def test_discount_extremes() -> None:
    op = opinion(torch.tensor([[0.6, 0.1, -0.3], [0.2, 0.5, 0.1]], dtype=torch.float64), 0.1)
    full = discount(op, torch.ones(2, dtype=torch.float64))
    np.testing.assert_allclose(full.belief.numpy(), op.belief.numpy())
    np.testing.assert_allclose(full.alpha.numpy(), op.alpha.numpy())
    none = discount(op, torch.tensor([0.0, -0.4], dtype=torch.float64))  # clipped to 0
    np.testing.assert_allclose(none.uncertainty.numpy(), [1.0, 1.0])
    other = opinion(torch.tensor([[0.1, 0.9, 0.0], [0.0, 0.0, 0.9]], dtype=torch.float64), 0.1)
    both = combine(other, none)  # a vacuous opinion changes nothing
    np.testing.assert_allclose(both.belief.numpy(), other.belief.numpy(), rtol=1e-10)
    half = discount(op, torch.full((2,), 0.5, dtype=torch.float64))
    np.testing.assert_allclose(half.belief.numpy(), 0.5 * op.belief.numpy())
    np.testing.assert_allclose((half.belief.sum(-1) + half.uncertainty).numpy(), [1.0, 1.0])


def test_fisher_matrix_is_hessian_of_log_normaliser() -> None:
    alpha = torch.tensor([1.5, 3.0, 0.7], dtype=torch.float64)

    def log_norm(a: torch.Tensor) -> torch.Tensor:
        return torch.lgamma(a).sum() - torch.lgamma(a.sum())

    hess = torch.autograd.functional.hessian(log_norm, alpha)
    np.testing.assert_allclose(dirichlet_fisher(alpha).numpy(), hess.numpy(), rtol=1e-10)


def test_match_information_equals_beta_fisher_in_mean_coordinates() -> None:
    # I_mu = J^T F_beta J with a = mu*S, b = (1-mu)*S: check against autograd of log B(a, b)
    a, strength = 4.0, 30.0
    mu = torch.tensor(a / strength, dtype=torch.float64)

    def log_norm(m: torch.Tensor) -> torch.Tensor:
        x, y = m * strength, (1 - m) * strength
        return torch.lgamma(x) + torch.lgamma(y) - torch.lgamma(x + y)

    # For a fixed precision the Beta is an exponential family in (a, b), so the information
    # about mu is the second derivative of the log-normaliser along the line (a, b)(mu).
    hess = torch.autograd.functional.hessian(log_norm, mu)
    info = match_information(
        torch.tensor(a, dtype=torch.float64), torch.tensor(strength, dtype=torch.float64)
    )
    assert float(info) == pytest.approx(float(hess), rel=1e-10)


def test_fisher_softening_properties() -> None:
    c = 65
    label = torch.ones(1, dtype=torch.float64)
    # vacuous opinion: no evidence at all -> maximally soft label
    ones = torch.ones(1, dtype=torch.float64)
    assert float(fisher_soften(label, ones, ones * c, c)) == pytest.approx(0.5)
    # more evidence in the same proportions -> monotonically closer to the label
    scales = [1.0, 2.0, 5.0, 20.0, 100.0, 1000.0]
    soft = [float(fisher_soften(label, ones * (1 + 3 * s), ones * (c + 10 * s), c)) for s in scales]
    assert all(b >= a for a, b in zip(soft, soft[1:], strict=False)) and soft[0] < soft[2]
    assert 0.5 < soft[0] < 0.99 and soft[-1] == pytest.approx(1.0)  # the weight reaches 1
    # the softened label always lies between 1/2 and the label, for labels on both sides
    y = torch.tensor([0.0, 0.2, 0.8, 1.0], dtype=torch.float64)
    a_self = torch.tensor([2.0, 40.0, 3.0, 500.0], dtype=torch.float64)
    a_tot = torch.tensor([80.0, 200.0, 90.0, 700.0], dtype=torch.float64)
    out = fisher_soften(y, a_self, a_tot, c)
    assert torch.all((out - 0.5) * (y - 0.5) >= 0)
    assert torch.all((out - 0.5).abs() <= (y - 0.5).abs())
    w = fisher_weight(a_self, a_tot, c)
    assert torch.all((w >= 0) & (w <= 1))


def test_fisher_softening_follows_the_labels_direction() -> None:
    c, tau = 65, 0.1

    def alphas(own: float, negatives: float) -> tuple[torch.Tensor, torch.Tensor]:
        sims = torch.tensor([[own] + [negatives] * (c - 1)], dtype=torch.float64)
        op = opinion(sims, tau)
        return op.alpha[:, 0], op.strength

    weak, strong = alphas(0.2, 0.1), alphas(0.3, -0.3)  # own 0.3 vs -0.3: more for a match
    clean = torch.ones(1, dtype=torch.float64)
    assert float(fisher_soften(clean, *strong, c)) > float(fisher_soften(clean, *weak, c))
    assert float(fisher_soften(clean, *strong, c)) > 0.99
    # the same strong match evidence does not back a mismatch label: it goes to 1/2
    assert float(fisher_soften(torch.zeros(1, dtype=torch.float64), *strong, c)) == pytest.approx(0.5)
    against = alphas(-0.3, 0.3)  # rivals far ahead: a mismatch label firms, a match softens
    assert float(fisher_soften(torch.zeros(1, dtype=torch.float64), *against, c)) < 0.01
    assert float(fisher_soften(clean, *against, c)) == pytest.approx(0.5)


def test_fisher_softening_gradients_finite_at_extremes() -> None:
    sims = torch.tensor([[1e3] + [-1e3] * 8, [-1e3] * 9, [0.0] * 9], requires_grad=True)
    op = opinion(sims, 0.1)
    out = fisher_soften(torch.ones(3), op.alpha[:, 0], op.strength, 9)
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(sims.grad).all()


def test_kl_to_uniform_zero_at_uniform_and_positive_elsewhere() -> None:
    assert float(kl_to_uniform(torch.ones(1, 5))) == pytest.approx(0.0, abs=1e-6)
    assert float(kl_to_uniform(torch.tensor([[5.0, 1.0, 1.0]]))) > 0
