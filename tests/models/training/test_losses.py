"""Every loss: finite values and gradients at extreme similarities, u -> 0 / 1, batch of 1."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pairsift.models.training import losses as L


def _emb(b: int, d: int = 8, seed: int = 0, collapse: str = "") -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    img = torch.randn(b, d, generator=g)
    if collapse == "same":  # every cosine on the diagonal is 1: u -> 0 for the own caption
        txt = img.clone()
    elif collapse == "one-point":  # all embeddings equal and opposite: cosines all -1, u -> 1
        img = torch.ones(b, d)
        txt = -img
    else:
        txt = torch.randn(b, d, generator=g)
    return (F.normalize(img, dim=-1).requires_grad_(), F.normalize(txt, dim=-1).requires_grad_())


CASES = [
    pytest.param(1, "", id="batch-of-1"),
    pytest.param(6, "", id="random"),
    pytest.param(6, "same", id="identical-views"),
    pytest.param(6, "one-point", id="all-opposite"),
]


def _check(loss: torch.Tensor, *leaves: torch.Tensor) -> None:
    assert torch.isfinite(loss).all()
    loss.sum().backward()
    for leaf in leaves:
        assert leaf.grad is not None and torch.isfinite(leaf.grad).all()


@pytest.mark.parametrize(("b", "collapse"), CASES)
def test_all_losses_finite(b: int, collapse: str) -> None:
    for fn in (
        lambda i, t: L.hinge_topk(i, t, 0.2, 1),
        lambda i, t: L.hinge_topk(i, t, torch.full((i.shape[0],), 0.2), 3),
        lambda i, t: L.info_nce(i, t, 0.05),
        lambda i, t: L.evidential_loss(i, t, 0.1, 0.1),
        lambda i, t: L.complementary_loss(i, t, 0.01),
        lambda i, t: L.mutual_learning_loss(i, t, t, torch.full((i.shape[0],), 0.5), 0.05),
    ):
        img, txt = _emb(b, collapse=collapse)
        out = fn(img, txt)
        assert out.shape == (b,)
        _check(out, img, txt)


def test_saturated_softmax_complementary_loss_finite() -> None:
    img = F.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), dim=-1).requires_grad_()
    txt = F.normalize(torch.tensor([[0.0, 1.0], [1.0, 0.0]]), dim=-1).requires_grad_()
    out = L.complementary_loss(img, txt, 1e-4)  # p(negative) == 1 exactly in float32
    _check(out, img, txt)
    assert float(out.detach().max()) > 5.0


def test_trusted_margin_extremes_and_shape() -> None:
    soft = torch.tensor([0.0, 1.0, 1.0, 1.0, 1.0, 0.5, 1.7, -0.3], requires_grad=True)
    unc = torch.tensor([0.1, 0.0, 0.5, 0.75, 1.0, 1.2, 0.9, 0.99], requires_grad=True)
    hard = torch.tensor([False, False, True, True, True, True, True, True])
    m = L.trusted_margin(soft, unc, hard, gamma=0.2, threshold=0.5, power=0.5)
    _check(m, soft, unc)
    m = m.detach()
    assert float(m[0]) == 0.0 and float(m[1]) == pytest.approx(0.2)
    assert float(m[2]) == pytest.approx(0.2)  # at the threshold: gamma_hat itself
    assert float(m[3]) == pytest.approx(0.2 * 0.5**0.5)
    assert float(m[4]) == 0.0 and float(m[5]) == 0.0  # u >= 1: no negative base, margin 0
    clean = torch.tensor([True, False, False, False, False, False, False, False])
    full = L.trusted_margin(soft, unc, hard, gamma=0.2, threshold=0.5, power=0.5, clean=clean)
    assert float(full[0].detach()) == pytest.approx(0.2)  # a clean pair gets the full margin (UGNCL)
    assert torch.equal(full[1:], L.trusted_margin(soft, unc, hard, 0.2, 0.5, 0.5)[1:])
    assert float(m[6]) <= 0.2 and float(m[7]) == 0.0


def test_soft_margin_formula() -> None:
    y = torch.tensor([0.0, 0.5, 1.0])
    expected = 0.2 * (10**y - 1) / 9
    torch.testing.assert_close(L.soft_margin(y, 0.2), expected)


def test_hinge_prefers_matched_pairs_and_schedule() -> None:
    img, _ = _emb(5, seed=1)
    good = L.hinge_topk(img.detach(), img.detach(), 0.2, 1).mean()
    shuffled = L.hinge_topk(img.detach(), img.detach().roll(1, 0), 0.2, 1).mean()
    assert float(good) < float(shuffled)
    assert L.hinge_schedule(0, 3, 8) == 8 and L.hinge_schedule(3, 3, 8) == 1


def test_mutual_learning_keeps_a_noisy_pairs_faithful_translation_by_its_source() -> None:
    en = F.normalize(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), dim=-1)
    img = F.normalize(torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]]), dim=-1)  # fits neither
    tgt = en.clone().requires_grad_()  # "un coche rojo" for "a red car": a faithful translation
    noisy_pair = L.mutual_learning_loss(img, en, tgt, torch.zeros(2), 0.05, 0.2, torch.ones(2))
    assert float(noisy_pair.sum()) == pytest.approx(0.0, abs=1e-6)  # nothing pushes it away
    broken = L.mutual_learning_loss(img, en, tgt, torch.zeros(2), 0.05, 0.2, torch.zeros(2))
    assert float(broken.sum()) > 1.0  # an untrusted translation is pushed from its source
    far = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])  # says something else entirely
    assert float(L.mutual_learning_loss(img, en, far, torch.zeros(2), 0.05, 0.2, torch.zeros(2)).sum()) == 0.0
    # a noisy pair's translation is still pushed from the image it does not describe
    on_image = L.mutual_learning_loss(img, en, img.clone(), torch.zeros(2), 0.05, 0.2, torch.ones(2))
    clean_pair = L.mutual_learning_loss(img, en, img.clone(), torch.ones(2), 0.05, 0.2, torch.ones(2))
    assert float(on_image.sum()) > float(clean_pair.sum()) - 1e-6
    aligned = L.mutual_learning_loss(img, en, en.clone(), torch.ones(2), 0.05)
    assert float(aligned.sum()) == pytest.approx(0.0, abs=1e-5)  # perfect when clean and faithful


def test_evidential_loss_matches_reference_formula() -> None:
    from pairsift.models.noise.evidential import kl_to_uniform

    img, txt = (t.detach().double() for t in _emb(5, seed=4))
    sims = (img @ txt.t()).clamp(-1, 1)

    def rows(s: torch.Tensor) -> torch.Tensor:
        alpha = torch.exp(torch.tanh(s) / 0.1) + 1
        risk = torch.digamma(alpha.sum(1)) - torch.digamma(alpha.diag())
        tilde = alpha.clone()
        tilde.fill_diagonal_(1.0)
        return risk + 0.3 * kl_to_uniform(tilde)

    expected = 0.5 * (rows(sims) + rows(sims.t()))
    torch.testing.assert_close(L.evidential_loss(img, txt, 0.1, 0.3), expected)


def _reference_evidential(img: torch.Tensor, txt: torch.Tensor, tau: float, lam: float) -> torch.Tensor:
    """The loss as autograd differentiates it, cell by cell (the hand-written backward's check)."""
    b = img.shape[0]
    alpha = torch.exp(torch.tanh((img @ txt.t()).clamp(-1, 1)) / tau) + 1.0
    eye = torch.eye(b, dtype=torch.bool)
    tilde = torch.where(eye, torch.ones_like(alpha), alpha)
    total = torch.zeros(b, dtype=alpha.dtype)
    for dim in (1, 0):
        s_t = tilde.sum(dim=dim)
        kl = (torch.lgamma(s_t) - torch.lgamma(torch.tensor(float(b), dtype=alpha.dtype))
              - torch.lgamma(tilde).sum(dim) + ((tilde - 1) * torch.digamma(tilde)).sum(dim)
              - torch.digamma(s_t) * (s_t - b))
        total = total + torch.digamma(alpha.sum(dim)) - torch.digamma(alpha.diag()) + lam * kl
    return 0.5 * total


@pytest.mark.parametrize("batch", [2, 3, 33])
def test_evidential_loss_gradient_is_autograds(batch: int) -> None:
    img, txt = (t.detach().double().requires_grad_() for t in _emb(batch, seed=batch))
    weight = torch.rand(batch, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    ours = torch.autograd.grad((L.evidential_loss(img, txt, 0.1, 0.3) * weight).sum(), (img, txt))
    ref = torch.autograd.grad((_reference_evidential(img, txt, 0.1, 0.3) * weight).sum(), (img, txt))
    for a, b in zip(ours, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)
    torch.autograd.gradcheck(lambda i, t: L.evidential_loss(i, t, 0.5, 0.3), (img, txt))


@pytest.mark.parametrize(("batch", "topk"), [(2, 1), (5, 3), (40, 8)])
def test_hinge_topk_equals_the_full_cost_matrices(batch: int, topk: int) -> None:
    img, txt = (t.detach().double().requires_grad_() for t in _emb(batch, seed=7 + batch))
    margin = torch.linspace(0.05, 0.4, batch, dtype=torch.float64).requires_grad_()

    def full(i: torch.Tensor, t: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        sims = (i @ t.t()).clamp(-1, 1)
        pos, eye = sims.diag(), torch.eye(batch, dtype=torch.bool)
        k = min(topk, batch - 1)
        rows = (m[:, None] - pos[:, None] + sims).clamp_min(0).masked_fill(eye, 0.0)
        cols = (m[None, :] - pos[None, :] + sims).clamp_min(0).masked_fill(eye, 0.0)
        return rows.topk(k, dim=1).values.mean(1) + cols.topk(k, dim=0).values.mean(0)

    ours, ref = L.hinge_topk(img, txt, margin, topk), full(img, txt, margin)
    torch.testing.assert_close(ours, ref)
    g_ours = torch.autograd.grad(ours.sum(), (img, txt, margin))
    g_ref = torch.autograd.grad(ref.sum(), (img, txt, margin))
    for a, b in zip(g_ours, g_ref, strict=True):
        torch.testing.assert_close(a, b)


def _reference_complementary(img: torch.Tensor, txt: torch.Tensor, temperature: float) -> torch.Tensor:
    b = img.shape[0]
    logits = (img @ txt.t()).clamp(-1, 1) / temperature
    eye = torch.eye(b, dtype=torch.bool)

    def rows(z: torch.Tensor) -> torch.Tensor:
        logp = (z - torch.logsumexp(z, dim=1, keepdim=True)).clamp(max=-1e-6)
        return -torch.log(-torch.expm1(logp)).masked_fill(eye, 0.0).sum(dim=1) / (b - 1)

    return 0.5 * (rows(logits) + rows(logits.t()))


@pytest.mark.parametrize(("batch", "temperature"), [(2, 0.05), (9, 0.5), (33, 0.05), (6, 1e-3)])
def test_complementary_loss_gradient_is_autograds(batch: int, temperature: float) -> None:
    img, txt = (t.detach().double().requires_grad_() for t in _emb(batch, seed=batch + 20))
    if temperature < 0.01:  # a saturated softmax: some log p capped (no gradient there)
        txt = img.detach().clone().requires_grad_()
    weight = torch.rand(batch, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    ours = L.complementary_loss(img, txt, temperature)
    ref = _reference_complementary(img, txt, temperature)
    torch.testing.assert_close(ours, ref)
    g_ours = torch.autograd.grad((ours * weight).sum(), (img, txt))
    g_ref = torch.autograd.grad((ref * weight).sum(), (img, txt))
    for a, b in zip(g_ours, g_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def _autograd_info_nce(img: torch.Tensor, txt: torch.Tensor, temperature: float) -> torch.Tensor:
    logits = (img @ txt.t()).clamp(-1.0, 1.0) / temperature
    target = torch.arange(img.shape[0])
    return 0.5 * (F.cross_entropy(logits, target, reduction="none")
                  + F.cross_entropy(logits.t(), target, reduction="none"))


@pytest.mark.parametrize("scale", [1.0, 1.7])  # 1.7: unnormalised rows, the clamp cuts cells
def test_info_nce_written_backward_equals_autograd(scale: float) -> None:
    img, txt = _emb(12, d=6, seed=3)
    img, txt = (img.detach() * scale).requires_grad_(), txt.detach().requires_grad_()
    weights = torch.linspace(0.1, 2.0, 12)
    ours = L.info_nce(img, txt, 0.07)
    ref_img, ref_txt = img.detach().clone().requires_grad_(), txt.detach().clone().requires_grad_()
    ref = _autograd_info_nce(ref_img, ref_txt, 0.07)
    assert torch.allclose(ours, ref, atol=1e-5)
    (ours * weights).sum().backward()
    (ref * weights).sum().backward()
    if scale > 1.0:
        assert bool(((img.detach() @ txt.detach().t()).abs() > 1.0).any())
    assert torch.allclose(img.grad, ref_img.grad, atol=1e-5)
    assert torch.allclose(txt.grad, ref_txt.grad, atol=1e-5)
