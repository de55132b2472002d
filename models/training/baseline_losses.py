"""The NCR and DECL baselines' losses and per-pair statistics, as their papers define them.

NCR: Huang et al., "Learning with Noisy Correspondence for Cross-modal Matching", NeurIPS
2021. DECL: Qin et al., "Deep Evidential Learning with Noisy Correspondence for Cross-modal
Retrieval", ACM MM 2022. Every function takes a [B, B] similarity matrix of one batch (rows:
images, columns: captions, the diagonal the batch's own pairs) and returns one value per pair
(or a count): the recipes in :mod:`pairsift.models.training.baselines` pick the rows and
reduce them the way each method does.
"""

from __future__ import annotations

import math

import torch

# DECL's robust dynamic hinge is weighted λ1 = 0.8 against the evidential risk (the paper's
# default, which its experiments use on every dataset)
DECL_HINGE_WEIGHT = 0.8


def _eye(b: int, like: torch.Tensor) -> torch.Tensor:
    return torch.eye(b, dtype=torch.bool, device=like.device)


def mean_hinge_costs(sims: torch.Tensor, margin: float) -> torch.Tensor:
    """NCR's per-sample loss: the hinge [m − s_ii + s_ij]_+ averaged over the whole row (the
    own cell counts 0 and the mean is over all B cells, as NCR writes it), plus the same
    over the column. NCR warms up on it and fits its GMM on it; that it averages every
    negative, not the hardest, is what keeps the warm-up from memorising noisy pairs."""
    b = sims.shape[0]
    eye = _eye(b, sims)
    pos = sims.diagonal()
    i2t = (margin - pos[:, None] + sims).clamp_min(0.0).masked_fill(eye, 0.0).mean(dim=1)
    t2i = (margin - pos[None, :] + sims).clamp_min(0.0).masked_fill(eye, 0.0).mean(dim=0)
    return i2t + t2i


def ncr_prediction(sims: torch.Tensor, margin: float) -> torch.Tensor:
    """NCR's P_i, the net's own guess that pair i matches: how far its mean hinge cost stays
    below the margin, m − cost/2 clamped to [0, m], over the mean of the batch's top tenth
    (so the surest pairs read about 1), clamped to [0, 1]. NCR rectifies labels with it."""
    b = sims.shape[0]
    p = (margin - mean_hinge_costs(sims, margin) / 2.0).clamp(0.0, max(margin, 0.0))
    top = p.topk(min(b, b // 10 + 1)).values.mean()
    return (p / top.clamp_min(1e-12)).clamp(0.0, 1.0)


def decl_evidence(sims: torch.Tensor, tau: float) -> torch.Tensor:
    """DECL's evidence extractor e = exp(tanh(s)/τ): positive, bounded by exp(1/τ)."""
    if tau <= 0:
        raise ValueError(f"evidence temperature must be positive, got {tau}")
    return torch.exp(torch.tanh(sims) / tau)


def dirichlet_kl_uniform(alpha: torch.Tensor) -> torch.Tensor:
    """KL(Dir(α) ‖ Dir(1, …, 1)) of each row of ``alpha`` [B, K] (the evidential regulariser)."""
    k = alpha.shape[1]
    s = alpha.sum(dim=1, keepdim=True)
    log_norm = torch.lgamma(s).squeeze(1) - torch.lgamma(alpha).sum(dim=1) - math.lgamma(k)
    return log_norm + ((alpha - 1.0) * (torch.digamma(alpha) - torch.digamma(s))).sum(dim=1)


def decl_risk(
    sims: torch.Tensor, tau: float, kl_weight: float, matched: torch.Tensor
) -> torch.Tensor:
    """DECL's evidential loss per pair, both retrieval directions summed.

    A row's Dirichlet is α = e + 1 over the batch's captions (image → text; the columns for
    text → image). Its risk is the expected squared error of the one-hot target under Dir(α),
    Σ_j (y_j − α_j/S)² + α_j(S − α_j)/(S²(S + 1)), plus λ·KL(Dir(α̃) ‖ Dir(1)) where α̃ keeps
    only the evidence the target does not claim. A pair the division judges unmatched
    (``matched`` False) has the all-zero target: every cell of its row is pushed towards no
    evidence, its own included, and the KL sees all of it.
    """
    b = sims.shape[0]
    target = torch.diag(matched.to(sims.dtype))
    ev = decl_evidence(sims, tau)
    total = torch.zeros(b, dtype=sims.dtype, device=sims.device)
    for alpha in (ev + 1.0, ev.t() + 1.0):
        s = alpha.sum(dim=1, keepdim=True)
        p = alpha / s
        err = (target - p).square().sum(dim=1)
        var = (p * (1.0 - p)).sum(dim=1) / (s.squeeze(1) + 1.0)
        kept_evidence = (alpha - 1.0) * (1.0 - target) + 1.0
        total = total + err + var + kl_weight * dirichlet_kl_uniform(kept_evidence)
    return total


def robust_dynamic_hinge(scores: torch.Tensor, margin: float, negatives: int) -> torch.Tensor:
    """DECL's robust dynamic hinge per pair: [m − s_ii + s_ij]_+ over the ``negatives``
    costliest captions of the row, plus over the costliest images of the column, summed and
    divided by their count (``scores`` are DECL's tanh-squashed similarities)."""
    b = scores.shape[0]
    if b < 2:
        return scores.diagonal() * 0.0
    k = max(1, min(int(negatives), b - 1))
    eye = _eye(b, scores)
    pos = scores.diagonal()
    cost_i2t = (margin - pos[:, None] + scores).clamp_min(0.0).masked_fill(eye, 0.0)
    cost_t2i = (margin - pos[None, :] + scores).clamp_min(0.0).masked_fill(eye, 0.0)
    top = cost_i2t.topk(k, dim=1).values.sum(dim=1) + cost_t2i.topk(k, dim=0).values.sum(dim=0)
    return top / k


def decl_negatives(epoch: int, warmup_epochs: int, batch_size: int, fewest: int) -> int:
    """DECL's hardness schedule: the hinge starts on every negative of the batch and sheds
    them linearly to ``fewest`` (μ). DECL sheds a fixed number per step, which on its
    datasets reaches μ about when the warm-up ends; a set of any size gets that by shedding
    per epoch over the warm-up."""
    if epoch >= warmup_epochs or warmup_epochs <= 0:
        return max(1, fewest)
    share = epoch / warmup_epochs
    return max(fewest, 1, int(batch_size - (batch_size - fewest) * share))


def decl_opinion(
    sims: torch.Tensor, tau: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """DECL's division of one batch: (matched, own share, uncertainty) per pair.

    The evidence of both directions is summed, e + eᵀ, and normalised over the row; a pair
    is matched when its own cell holds the largest share. The uncertainty is DECL's
    K/S_i2t + K/S_t2i (K the batch size, S a Dirichlet's strength): near 2 for a pair whose
    image and caption find evidence nowhere, near 0 for one that finds a lot.
    """
    b = sims.shape[0]
    ev = decl_evidence(sims, tau)
    both = ev + ev.t()
    share = both / both.sum(dim=1, keepdim=True)
    own = torch.arange(b, device=sims.device)
    matched = share.argmax(dim=1) == own
    unc = b / (ev + 1.0).sum(dim=1) + b / (ev + 1.0).sum(dim=0)
    return matched, share.diagonal(), unc
