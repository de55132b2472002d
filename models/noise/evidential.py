"""Evidential opinions over a pair's caption and its negatives (DECL/UCPM/UML).

Column 0 of a similarity matrix is always the pair's own caption, columns 1..K its negatives.
Evidence e = exp(tanh(s)/τ) is bounded in [exp(-1/τ), exp(1/τ)], so every quantity here stays
finite whatever the similarities: α ≥ 1, S ≥ K+1, u ∈ (0, 1].

Fisher softening (UML; derivation in docs/noise_modelling.md): the Dirichlet's Fisher matrix
is the Hessian of its log-normaliser, F = diag(ψ'(α)) − ψ'(S)·11ᵀ. Aggregating the negatives
gives the Beta(a, b) opinion on "the own caption is the match" (a = α_self, b = S − a); in
mean/precision coordinates (μ = a/S, φ = S) the information about μ is
I_μ = φ²·(ψ'(a) + ψ'(b)). Its Cramér–Rao standard error σ = I_μ^{-1/2}, relative to σ₀ of
the weakest opinion (S = C) with the same mean, says how much of the label the opinion can
vouch for: w = clip(1 − σ/σ₀, 0, 1), ỹ = ½ + w·(y − ½).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

_TINY = 1e-12


@dataclass
class Opinion:
    """A Dirichlet opinion per row: ``alpha`` [N, C], ``belief`` [N, C], ``uncertainty`` [N]."""

    alpha: torch.Tensor
    belief: torch.Tensor
    uncertainty: torch.Tensor

    @property
    def strength(self) -> torch.Tensor:
        return self.alpha.sum(dim=-1)

    @property
    def num_classes(self) -> int:
        return int(self.alpha.shape[-1])

    @property
    def expected(self) -> torch.Tensor:
        """Expected categorical probabilities α/S."""
        return self.alpha / self.strength.unsqueeze(-1)


def evidence(sims: torch.Tensor, tau: float) -> torch.Tensor:
    """e = exp(tanh(s)/τ): bounded, positive, monotone in s."""
    if tau <= 0:
        raise ValueError(f"evidence temperature must be positive, got {tau}")
    return torch.exp(torch.tanh(sims) / tau)


def opinion_from_evidence(ev: torch.Tensor) -> Opinion:
    alpha = ev + 1.0
    strength = alpha.sum(dim=-1, keepdim=True)
    belief = ev / strength
    uncertainty = ev.shape[-1] / strength.squeeze(-1)
    return Opinion(alpha=alpha, belief=belief, uncertainty=uncertainty)


def opinion(sims: torch.Tensor, tau: float) -> Opinion:
    """Opinion from [N, K+1] similarities (column 0 = own caption)."""
    return opinion_from_evidence(evidence(sims, tau))


def dempster_shafer(
    b1: torch.Tensor, u1: torch.Tensor, b2: torch.Tensor, u2: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reduced Dempster–Shafer combination of two opinions over the same C classes.

    b = (b1·b2 + b1·u2 + b2·u1)/(1 − c), u = u1·u2/(1 − c), with conflict
    c = Σ_{i≠j} b1_i b2_j = (1−u1)(1−u2) − Σ_i b1_i b2_i. 1 − c ≥ u1 + u2 − u1·u2 > 0 for
    positive uncertainties, so the division is safe; the clamp only guards rounding.
    """
    u1e, u2e = u1.unsqueeze(-1), u2.unsqueeze(-1)
    agree = (b1 * b2).sum(dim=-1)
    conflict = (1 - u1) * (1 - u2) - agree
    scale = (1 - conflict).clamp_min(_TINY)
    belief = (b1 * b2 + b1 * u2e + b2 * u1e) / scale.unsqueeze(-1)
    return belief, u1 * u2 / scale


def combine(op1: Opinion, op2: Opinion) -> Opinion:
    """Dempster–Shafer combination as an opinion (S = C/u, α = b·S + 1)."""
    belief, unc = dempster_shafer(op1.belief, op1.uncertainty, op2.belief, op2.uncertainty)
    strength = op1.num_classes / unc.clamp_min(_TINY)
    alpha = belief * strength.unsqueeze(-1) + 1.0
    return Opinion(alpha=alpha, belief=belief, uncertainty=unc)


def discount(op: Opinion, trust: torch.Tensor) -> Opinion:
    """Subjective-logic trust discounting: b' = t·b, u' = 1 − t·(1 − u), t ∈ [0, 1] per row.

    Used for NRF: a target-language opinion counts only as far as its caption agrees with the
    English source (t = translation consistency); t = 0 turns it into a vacuous opinion, which
    Dempster–Shafer combination then ignores.
    """
    t = trust.clamp(0.0, 1.0).unsqueeze(-1)
    belief = op.belief * t
    unc = 1.0 - t.squeeze(-1) * (1.0 - op.uncertainty)
    strength = op.num_classes / unc.clamp_min(_TINY)
    return Opinion(alpha=belief * strength.unsqueeze(-1) + 1.0, belief=belief, uncertainty=unc)


def dirichlet_fisher(alpha: torch.Tensor) -> torch.Tensor:
    """Fisher information matrix of Dir(α) w.r.t. α: diag(ψ'(α)) − ψ'(S)·11ᵀ, [..., C, C]."""
    tri = torch.special.polygamma(1, alpha)
    tri_s = torch.special.polygamma(1, alpha.sum(dim=-1))
    eye = torch.diag_embed(tri)
    return eye - tri_s[..., None, None] * torch.ones_like(eye)


def match_information(alpha_self: torch.Tensor, alpha_total: torch.Tensor) -> torch.Tensor:
    """Fisher information about the match probability μ: I_μ = S²·(ψ'(a) + ψ'(S − a))."""
    rest = (alpha_total - alpha_self).clamp_min(_TINY)
    tri = torch.special.polygamma(1, alpha_self) + torch.special.polygamma(1, rest)
    return alpha_total**2 * tri


def fisher_weight(
    alpha_self: torch.Tensor, alpha_total: torch.Tensor, num_classes: int,
    direction: torch.Tensor | float = 1.0,
) -> torch.Tensor:
    """w = erf(z/√2) ∈ [0, 1]: how far the opinion vouches for a label on ``direction``'s side
    (+1 a match, −1 a mismatch).

    z = direction·(μ − 1/C)/σ: how many Cramér–Rao standard errors σ = I_μ^{−1/2} the
    opinion's match probability μ = a/S stands above (or below) the blank opinion's 1/C. A
    blank opinion gives 0; evidence against a match firms a mismatch label and softens a
    match label, never the other way round; and w reaches 1 as evidence grows, so a
    well-determined pair keeps its label.
    """
    mu = alpha_self / alpha_total.clamp_min(_TINY)
    sigma = match_information(alpha_self, alpha_total).clamp_min(_TINY).rsqrt()
    z = torch.as_tensor(direction, dtype=mu.dtype, device=mu.device) * (mu - 1.0 / num_classes) / sigma
    return torch.erf(z / math.sqrt(2.0)).clamp(0.0, 1.0)


def fisher_soften(
    label: torch.Tensor, alpha_self: torch.Tensor, alpha_total: torch.Tensor, num_classes: int
) -> torch.Tensor:
    """Fisher-softened target ỹ = ½ + w·(y − ½), w read on the label's own side of ½: an
    opinion that does not back the label's direction softens it towards ½."""
    direction = torch.where(label >= 0.5, 1.0, -1.0).to(label.dtype)
    w = fisher_weight(alpha_self, alpha_total, num_classes, direction)
    return 0.5 + w * (label - 0.5)


def kl_to_uniform(alpha: torch.Tensor) -> torch.Tensor:
    """KL(Dir(α) ‖ Dir(1)) per row (DECL/EDL regulariser)."""
    strength = alpha.sum(dim=-1)
    c = alpha.shape[-1]
    return (
        torch.lgamma(strength)
        - torch.lgamma(torch.tensor(float(c), dtype=alpha.dtype, device=alpha.device))
        - torch.lgamma(alpha).sum(dim=-1)
        + ((alpha - 1) * (torch.digamma(alpha) - torch.digamma(strength).unsqueeze(-1))).sum(-1)
    )
