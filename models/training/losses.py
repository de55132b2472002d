"""Training losses (torch, batch-first, per-pair outputs so callers can weight and mask).

Every loss takes L2-normalised embeddings [B, D] and returns a [B] tensor; cosines are clamped
to [−1, 1] and powers only ever see bases clamped to [0, 1], so there is no NaN whatever the
similarities, the uncertainties or the batch size (a batch of 1 has no negatives: contrastive
terms are then 0, not NaN).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from pairsift.models.noise.special import digamma as fast_digamma


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
    clean: torch.Tensor | None = None,
) -> torch.Tensor:
    """UCPM: the full margin γ for clean pairs (as UGNCL's reference gives them), γ̂ for the
    others, shrunk for hard pairs by ((1 − u)/(1 − u_thr))^p ∈ [0, 1].

    Equal to γ̂ at the threshold and → 0 as u → 1. The base is clamped to [0, 1] before the
    fractional power: a negative base is what produces NaN margins in public code.
    """
    margin = soft_margin(soft_label, gamma)
    if clean is not None:
        margin = torch.where(clean, torch.full_like(margin, gamma), margin)
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
    k = max(1, min(topk, b - 1))
    # The cost is increasing in s_ij along a row (and a column), so the top-k negatives are
    # the k most similar other captions (images). They are found without autograd, and only
    # those k cells per row and column are recomputed with it: backward scatters [B, k].
    with torch.no_grad():
        others = sims.masked_fill(torch.eye(b, dtype=torch.bool, device=sims.device), -2.0)
        pick_i2t = others.topk(k, dim=1).indices
        pick_t2i = others.topk(k, dim=0).indices
    own = torch.arange(b, device=sims.device)
    top_i2t = _picked_cost(sims.gather(1, pick_i2t), m - pos, pick_i2t == own[:, None])
    top_t2i = _picked_cost(sims.gather(0, pick_t2i), m - pos, pick_t2i == own[None, :], dim=0)
    return top_i2t + top_t2i


def _picked_cost(
    picked: torch.Tensor, offset: torch.Tensor, is_own: torch.Tensor, dim: int = 1
) -> torch.Tensor:
    """Mean over ``dim`` of [offset + s]_+ at the picked cells (the own caption counts 0)."""
    shape = (-1, 1) if dim == 1 else (1, -1)
    cost = (offset.reshape(shape) + picked).clamp_min(0).masked_fill(is_own, 0.0)
    return cost.mean(dim=dim)


def hinge_schedule(epoch: int, warmup_epochs: int, warmup_topk: int) -> int:
    """Top-k negatives for the hinge: ``warmup_topk`` during warm-up, the hardest after."""
    return warmup_topk if epoch < warmup_epochs else 1


def info_nce(img: torch.Tensor, txt: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE per pair (the plain 'contrastive' baseline, OUT/model's loss)."""
    if img.shape[0] < 2:
        return _zero(img, txt)
    return _InfoNCE.apply(img, txt, temperature)


class _InfoNCE(torch.autograd.Function):
    """Both directions' cross-entropy of the clamped cosines / τ, with a written-out
    backward: one [B, B] gradient, ∂/∂z = ½(P_row·g_i + P_col·g_j) − g on the diagonal,
    instead of autograd's graph of two cross-entropies and a transpose (a quarter of a
    small-head training step). Equals autograd's to float rounding (tests)."""

    @staticmethod
    def forward(ctx, img: torch.Tensor, txt: torch.Tensor, temperature: float) -> torch.Tensor:
        sims = img @ txt.t()
        inside = (sims >= -1.0) & (sims <= 1.0)  # where the clamp passes the gradient
        logits = sims.clamp(-1.0, 1.0) / temperature
        log_rows = torch.log_softmax(logits, dim=1)
        log_cols = torch.log_softmax(logits, dim=0)
        ctx.save_for_backward(img, txt, log_rows, log_cols, inside)
        ctx.temperature = temperature
        return -0.5 * (torch.diagonal(log_rows) + torch.diagonal(log_cols))

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:
        img, txt, log_rows, log_cols, inside = ctx.saved_tensors
        grad = 0.5 * (log_rows.exp() * grad_out[:, None] + log_cols.exp() * grad_out[None, :])
        grad.diagonal().sub_(grad_out)
        grad = (grad / ctx.temperature) * inside
        return grad @ txt, grad.t() @ img, None


def evidential_loss(
    img: torch.Tensor, txt: torch.Tensor, tau: float, kl_weight: float = 0.1
) -> torch.Tensor:
    """Two-way evidential loss per pair (DECL): Bayes risk of CE under Dir(α) with the own
    caption (image) as target, plus λ·KL(Dir(α̃) ‖ Dir(1)) with the target's evidence removed.

    Evidence is elementwise in the similarity, so one [B, B] matrix of α serves both directions
    (rows: image→text, columns: text→image). The gradient is written out
    (:class:`_EvidentialRisk`): autograd's would evaluate ψ and ψ' of every cell again.
    """
    if img.shape[0] < 2:
        return _zero(img, txt)
    return _EvidentialRisk.apply(_sims(img, txt), float(tau), float(kl_weight))


class _EvidentialRisk(torch.autograd.Function):
    """:func:`evidential_loss` of a [B, B] similarity matrix, with its own backward.

    With A = α, T = α̃ (A off the diagonal, 1 on it), row sums R, R̃ and column sums C, C̃:
    out_i = ½[ψ(R_i) + ψ(C_i) − 2ψ(A_ii) + λ(KL_row_i + KL_col_i)], where
    KL = ln Γ(S̃) − ln Γ(B) + Σ g(T) − ψ(S̃)(S̃ − B) and g(t) = (t − 1)ψ(t) − ln Γ(t).
    So ∂KL/∂S̃ = −ψ'(S̃)(S̃ − B) and g'(t) = (t − 1)ψ'(t): backward needs ψ' of every cell
    once, forward ψ and ln Γ once (ψ by :func:`pairsift.models.noise.special.digamma`).
    """

    @staticmethod
    def forward(ctx, sims: torch.Tensor, tau: float, kl_weight: float) -> torch.Tensor:
        b = sims.shape[0]
        if tau <= 0:
            raise ValueError(f"evidence temperature must be positive, got {tau}")
        squashed = torch.tanh(sims)
        ev = torch.exp(squashed / tau)  # pairsift.models.noise.evidential.evidence, keeping tanh
        alpha = ev + 1.0
        eye = torch.eye(b, dtype=torch.bool, device=sims.device)
        tilde = alpha.masked_fill(eye, 1.0)
        cells = (tilde - 1.0) * fast_digamma(tilde) - torch.lgamma(tilde)
        lg_c = math.lgamma(b)
        total = -2.0 * torch.digamma(alpha.diagonal())
        sums = []
        for dim in (1, 0):
            s, s_t = alpha.sum(dim=dim), tilde.sum(dim=dim)
            kl = torch.lgamma(s_t) - lg_c + cells.sum(dim=dim) - torch.digamma(s_t) * (s_t - b)
            total = total + torch.digamma(s) + kl_weight * kl
            sums += [s, s_t]
        ctx.save_for_backward(squashed, ev, tilde, alpha.diagonal(), *sums)
        ctx.tau, ctx.kl_weight = tau, kl_weight
        return 0.5 * total

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        squashed, ev, tilde, diag, rows, rows_t, cols, cols_t = ctx.saved_tensors
        lam, b = ctx.kl_weight, squashed.shape[0]

        def trigamma(x: torch.Tensor) -> torch.Tensor:
            return torch.special.polygamma(1, x)

        kl_row = trigamma(rows_t) * (rows_t - b)  # −∂KL/∂S̃ per row, and per column below
        kl_col = trigamma(cols_t) * (cols_t - b)
        per_row = grad_out * (trigamma(rows) - lam * kl_row)
        per_col = grad_out * (trigamma(cols) - lam * kl_col)
        cell = (tilde - 1.0) * trigamma(tilde)  # g'(T); 0 on the diagonal, where T = 1
        grad = per_row[:, None] + per_col[None, :] + lam * cell * (grad_out[:, None] + grad_out[None, :])
        # the diagonal: α_ii enters ψ(A_ii) twice and not the KL terms (T_ii is fixed at 1)
        grad.diagonal().add_(grad_out * (lam * (kl_row + kl_col) - 2.0 * trigamma(diag)))
        grad_sims = 0.5 * grad * ev * (1.0 - squashed.square()) / ctx.tau
        return grad_sims, None, None


def complementary_loss(img: torch.Tensor, txt: torch.Tensor, temperature: float) -> torch.Tensor:
    """RCL: −Σ_{j≠i} log(1 − p_ij), p = softmax over the row; learns only from negatives.

    log(1 − p) is computed as log(−expm1(log p)) with log p capped just below 0, so a
    saturated softmax gives a large but finite loss and gradient.
    """
    if img.shape[0] < 2:
        return _zero(img, txt)
    return _ComplementaryRisk.apply(_sims(img, txt) / temperature)


_LOG_P_CAP = -1e-6  # log p is capped here: log(1 − p) stays finite for a saturated softmax


class _ComplementaryRisk(torch.autograd.Function):
    """:func:`complementary_loss` of [B, B] logits, with its own backward (autograd's keeps
    six [B, B] intermediates a direction). Per row, with p = softmax and q = 1 − p:
    ∂out_i/∂log p_ij = p_ij / ((B − 1) q_ij) off the diagonal where log p is not capped, and
    ∂log p_ij/∂z_il = δ_jl − p_il, so ∂/∂z = r − p·Σ_j r_j."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor) -> torch.Tensor:
        b = logits.shape[0]
        eye = torch.eye(b, dtype=torch.bool, device=logits.device)
        total = torch.zeros(b, dtype=logits.dtype, device=logits.device)
        saved = []
        for z in (logits, logits.t()):
            log_p = z - torch.logsumexp(z, dim=1, keepdim=True)
            q = -torch.expm1(log_p.clamp(max=_LOG_P_CAP))
            total = total - torch.log(q).masked_fill(eye, 0.0).sum(dim=1) / (b - 1)
            saved += [log_p, q]
        ctx.save_for_backward(*saved)
        return 0.5 * total

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor) -> torch.Tensor:
        log_p_rows, q_rows, log_p_cols, q_cols = ctx.saved_tensors
        b = q_rows.shape[0]
        eye = torch.eye(b, dtype=torch.bool, device=q_rows.device)
        scale = (0.5 / (b - 1)) * grad_out[:, None]
        grads = []
        for log_p, q in ((log_p_rows, q_rows), (log_p_cols, q_cols)):
            r = ((1.0 - q) / q * scale).masked_fill(eye | (log_p > _LOG_P_CAP), 0.0)
            grads.append(r - torch.exp(log_p) * r.sum(dim=1, keepdim=True))
        return grads[0] + grads[1].t()


def mutual_learning_loss(
    img: torch.Tensor,
    txt_en: torch.Tensor,
    txt_tgt: torch.Tensor,
    clean_weight: torch.Tensor,
    temperature: float,
    push_margin: float = 0.2,
    trust: torch.Tensor | None = None,
) -> torch.Tensor:
    """UML adaptive mutual learning over image / English / target-language embeddings.

    Two questions, two weights. Whether the translation says what its English source says is
    the translation's trust t (1 when unknown): the target caption is pulled to its source
    with weight t and pushed below ``push_margin`` cosine from it with 1 − t. A noisy *pair*
    keeps a correct translation of its (wrong) caption: "un coche rojo" still means "a red
    car". Whether the caption fits the image is the pair's clean weight w: with 1 − w the
    target caption is pushed below ``push_margin`` from the image, and with w·t the English
    and target views teach each other their image→caption distributions (symmetric KL, each
    side detached as teacher).
    """
    b = img.shape[0]
    w = clean_weight.clamp(0.0, 1.0)
    t = torch.ones_like(w) if trust is None else trust.clamp(0.0, 1.0)
    cos_en = (txt_en * txt_tgt).sum(-1).clamp(-1.0, 1.0)
    cos_img = (img * txt_tgt).sum(-1).clamp(-1.0, 1.0)
    loss = t * (1.0 - cos_en) + (1.0 - t) * (cos_en - push_margin).clamp_min(0)
    loss = loss + (1.0 - w) * (cos_img - push_margin).clamp_min(0)
    w = w * t
    if b >= 2:
        log_en = F.log_softmax(_sims(img, txt_en) / temperature, dim=1)
        log_tgt = F.log_softmax(_sims(img, txt_tgt) / temperature, dim=1)
        kl_en = F.kl_div(log_tgt, log_en.detach(), log_target=True, reduction="none").sum(1)
        kl_tgt = F.kl_div(log_en, log_tgt.detach(), log_target=True, reduction="none").sum(1)
        loss = loss + w * 0.5 * (kl_en + kl_tgt)
    return loss
