"""Training losses (torch, batch-first, per-pair outputs so callers can weight and mask).

Every loss takes L2-normalised embeddings [B, D] and returns a [B] tensor; cosines are clamped
to [−1, 1] and powers only ever see bases clamped to [0, 1], so there is no NaN whatever the
similarities, the uncertainties or the batch size (a batch of 1 has no negatives: contrastive
terms are then 0, not NaN).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pairsift.models.noise.evidential import evidence


def _zero(img: torch.Tensor, txt: torch.Tensor) -> torch.Tensor:
    """[B] zeros still attached to both inputs (a batch of 1 has no negatives)."""
    return (img.sum(-1) + txt.sum(-1)) * 0.0


def _sims(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a @ b.t()).clamp(-1.0, 1.0)


def soft_margin(soft_label: torch.Tensor, gamma: float) -> torch.Tensor:
    """γ̂ = γ(10^ỹ − 1)/9 (NCR's soft margin, UCPM's trusted margin), ỹ clamped to [0, 1]."""
    y = soft_label.clamp(0.0, 1.0)
    return gamma * (torch.pow(10.0, y) - 1.0) / 9.0


def trusted_margin(
    soft_label: torch.Tensor,
    uncertainty: torch.Tensor,
    hard: torch.Tensor,
    gamma: float,
    threshold: float,
    power: float = 1.0,
) -> torch.Tensor:
    """UCPM: γ̂ for every pair, shrunk for hard pairs by ((1 − u)/(1 − u_thr))^p ∈ [0, 1].

    Equal to γ̂ at the threshold and → 0 as u → 1. The base is clamped to [0, 1] before the
    fractional power: a negative base is what produces NaN margins in public code.
    """
    margin = soft_margin(soft_label, gamma)
    denom = max(1.0 - threshold, 1e-6)
    base = ((1.0 - uncertainty) / denom).clamp(0.0, 1.0)
    shrink = torch.where(hard, torch.pow(base, power), torch.ones_like(base))
    return margin * shrink


def hinge_topk(
    img: torch.Tensor, txt: torch.Tensor, margin: torch.Tensor | float, topk: int = 1
) -> torch.Tensor:
    """Two-way hinge [m_i − s_ii + s_ij]_+ averaged over the top-k in-batch negatives.

    k = 1 is VSE++/NCR's hardest negative; a larger k during warm-up (NCR/UCPM schedule) keeps
    early gradients from chasing a single, possibly mislabelled, negative.
    """
    b = img.shape[0]
    if b < 2:
        return _zero(img, txt)
    sims = _sims(img, txt)
    pos = sims.diag()
    m = torch.as_tensor(margin, dtype=sims.dtype, device=sims.device).expand(b)
    eye = torch.eye(b, dtype=torch.bool, device=sims.device)
    cost_i2t = (m[:, None] - pos[:, None] + sims).clamp_min(0).masked_fill(eye, 0.0)
    cost_t2i = (m[None, :] - pos[None, :] + sims).clamp_min(0).masked_fill(eye, 0.0)
    k = max(1, min(topk, b - 1))
    top_i2t = cost_i2t.topk(k, dim=1).values.mean(dim=1)
    top_t2i = cost_t2i.topk(k, dim=0).values.mean(dim=0)
    return top_i2t + top_t2i


def hinge_schedule(epoch: int, warmup_epochs: int, warmup_topk: int) -> int:
    """Top-k negatives for the hinge: ``warmup_topk`` during warm-up, the hardest after."""
    return warmup_topk if epoch < warmup_epochs else 1


def info_nce(img: torch.Tensor, txt: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE per pair (the plain 'contrastive' baseline)."""
    if img.shape[0] < 2:
        return _zero(img, txt)
    logits = _sims(img, txt) / temperature
    target = torch.arange(img.shape[0], device=img.device)
    return 0.5 * (
        F.cross_entropy(logits, target, reduction="none")
        + F.cross_entropy(logits.t(), target, reduction="none")
    )


def evidential_loss(
    img: torch.Tensor, txt: torch.Tensor, tau: float, kl_weight: float = 0.1
) -> torch.Tensor:
    """Two-way evidential loss per pair (DECL): Bayes risk of CE under Dir(α) with the own
    caption (image) as target, plus λ·KL(Dir(α̃) ‖ Dir(1)) with the target's evidence removed.

    Evidence is elementwise in the similarity, so one [B, B] matrix of α serves both directions
    (rows: image→text, columns: text→image) and every special function runs once.
    """
    b = img.shape[0]
    if b < 2:
        return _zero(img, txt)
    alpha = evidence(_sims(img, txt), tau) + 1.0
    pos = torch.digamma(alpha.diag())
    eye = torch.eye(b, dtype=torch.bool, device=img.device)
    tilde = torch.where(eye, torch.ones_like(alpha), alpha)
    lg = torch.lgamma(tilde)
    mom = (tilde - 1.0) * torch.digamma(tilde)
    lg_c = torch.lgamma(torch.tensor(float(b), dtype=alpha.dtype, device=alpha.device))
    total = torch.zeros(b, dtype=alpha.dtype, device=alpha.device)
    for dim in (1, 0):
        risk = torch.digamma(alpha.sum(dim=dim)) - pos
        s_t = tilde.sum(dim=dim)
        kl = (
            torch.lgamma(s_t)
            - lg_c
            - lg.sum(dim=dim)
            + mom.sum(dim=dim)
            - torch.digamma(s_t) * (s_t - b)
        )
        total = total + risk + kl_weight * kl
    return 0.5 * total


def complementary_loss(img: torch.Tensor, txt: torch.Tensor, temperature: float) -> torch.Tensor:
    """RCL: −Σ_{j≠i} log(1 − p_ij), p = softmax over the row; learns only from negatives.

    log(1 − p) is computed as log(−expm1(log p)) with log p capped just below 0, so a
    saturated softmax gives a large but finite loss and gradient.
    """
    b = img.shape[0]
    if b < 2:
        return _zero(img, txt)
    logits = _sims(img, txt) / temperature
    eye = torch.eye(b, dtype=torch.bool, device=img.device)

    def rows(z: torch.Tensor) -> torch.Tensor:
        logp = (z - torch.logsumexp(z, dim=1, keepdim=True)).clamp(max=-1e-6)
        comp = torch.log(-torch.expm1(logp)).masked_fill(eye, 0.0)
        return -comp.sum(dim=1) / (b - 1)

    return 0.5 * (rows(logits) + rows(logits.t()))


def mutual_learning_loss(
    img: torch.Tensor,
    txt_en: torch.Tensor,
    txt_tgt: torch.Tensor,
    clean_weight: torch.Tensor,
    temperature: float,
    push_margin: float = 0.2,
) -> torch.Tensor:
    """UML adaptive mutual learning over image / English / target-language embeddings.

    Clean-weighted part (w = the pair's soft clean weight): the English and target views
    teach each other their image→caption distributions (symmetric KL, each side detached as
    teacher) and the target caption is pulled to its English source. Noisy part (1 − w): the
    target caption is pushed below ``push_margin`` cosine from its image and English caption.
    """
    b = img.shape[0]
    w = clean_weight.clamp(0.0, 1.0)
    cos_en = (txt_en * txt_tgt).sum(-1).clamp(-1.0, 1.0)
    cos_img = (img * txt_tgt).sum(-1).clamp(-1.0, 1.0)
    pull = 1.0 - cos_en
    push = 0.5 * ((cos_en - push_margin).clamp_min(0) + (cos_img - push_margin).clamp_min(0))
    loss = w * pull + (1.0 - w) * push
    if b >= 2:
        log_en = F.log_softmax(_sims(img, txt_en) / temperature, dim=1)
        log_tgt = F.log_softmax(_sims(img, txt_tgt) / temperature, dim=1)
        kl_en = F.kl_div(log_tgt, log_en.detach(), log_target=True, reduction="none").sum(1)
        kl_tgt = F.kl_div(log_en, log_tgt.detach(), log_target=True, reduction="none").sum(1)
        loss = loss + w * 0.5 * (kl_en + kl_tgt)
    return loss
