"""The NCR and DECL baselines on pairsift's training loop, as their papers train them.

NCR (Huang et al., NeurIPS 2021): two nets warm up on the mean hinge over all in-batch
negatives; then every epoch each net's per-sample loss (that same mean hinge under its
current heads) is min–max normalised and a two-component GMM divides the pairs into
labelled (clean posterior above the threshold) and unlabelled, and each net trains on the
*other* net's division (``train.co_teaching``, the trainer's co-divide). A labelled pair's
target is co-rectified, ŷ = w + (1 − w)·P with w the GMM posterior and P the net's own
prediction; an unlabelled pair's is the two nets' mean prediction. Both train the
hardest-negative hinge with the soft margin γ(10^ŷ − 1)/9, the unlabelled part only from the
second half of the co-training epochs on.

DECL (Qin et al., ACM MM 2022): one net; evidence e = exp(tanh(s)/τ) gives a Dirichlet per
retrieval direction, trained with the squared-error Bayes risk plus λ·KL, and a robust
dynamic hinge (λ1 = 0.8) whose top-k negatives shrink over the warm-up to μ
(``train.robust_topk``). Every epoch after the warm-up it divides the pairs by their
evidence: a pair is matched when its own cell holds the largest share of its row's two-way
evidence; unmatched pairs get the all-zero evidential target and leave the hinge.

Both score the pairs for their division in shuffled batches of ``train.batch_size``, as the
papers do (the in-batch losses depend on the batch mates).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning

from pairsift.models.config import DivisionConfig, PairsiftConfig, TrainConfig
from pairsift.models.noise.division import Division, UncertaintyMemory, divide
from pairsift.models.noise.reasons import Cuts, Rule
from pairsift.models.pairdata import PairEmbeddings
from pairsift.models.training import baseline_losses as BL
from pairsift.models.training.epoch_division import DividedPairs, NeighbourScores
from pairsift.models.training.heads import ProjectionHeads
from pairsift.models.training.losses import _sims, hinge_topk, soft_margin
from pairsift.models.training.recipe_base import Batch, TrainingRecipe, embed_batch, text_views


def _batches(n: int, batch_size: int, seed: int) -> list[np.ndarray]:
    """Rows in shuffled batches of about ``batch_size`` (equal sizes: no batch of one)."""
    order = np.random.default_rng(seed).permutation(n)
    return np.array_split(order, max(1, -(-n // max(batch_size, 2))))


def ncr_per_sample_loss(
    heads: ProjectionHeads, data: PairEmbeddings, t: TrainConfig, seed: int
) -> np.ndarray:
    """NCR's per-sample loss of every pair under ``heads``: the mean hinge over its batch
    (:func:`~pairsift.models.training.baseline_losses.mean_hinge_costs`), margin
    ``train.margin``, in shuffled batches of ``train.batch_size``."""
    img, txt = heads.embed_pairs(data.image, data.text)
    out = np.empty(len(data), dtype=np.float64)
    with torch.no_grad():
        for rows in _batches(len(data), t.batch_size, seed):
            idx = torch.from_numpy(rows)
            out[rows] = BL.mean_hinge_costs(_sims(img[idx], txt[idx]), t.margin).numpy()
    return out


def ncr_division(losses: np.ndarray, threshold: float) -> Division:
    """NCR's division: a two-component GMM on the min–max normalised per-sample losses
    (the ``gmm`` division method, NCR's settings), labelled where the low-loss component's
    posterior exceeds ``threshold``. Should no pair fall below it, NCR still leaves the
    hundredth least likely clean unlabelled."""
    n = len(losses)
    with warnings.catch_warnings():  # NCR caps EM at 10 iterations: expected, not news
        warnings.simplefilter("ignore", ConvergenceWarning)
        gmm = divide({"loss": losses}, None,
                     DivisionConfig(method="gmm", clean_threshold=threshold),
                     uncertainty=np.zeros(n))
    p = gmm.p_clean
    cut = threshold if p.min() <= threshold else float(np.sort(p)[n // 100])
    clean = p > cut
    return Division(
        np.where(clean, "clean", "noisy"), p, p.copy(), np.zeros(n),
        rule=np.where(clean, Rule.CLEAN_GMM.value, Rule.NOISY_GMM.value),
        cuts=Cuts(clean_threshold=cut),
    )


def unlabelled_starts(t: TrainConfig) -> int:
    """The first epoch NCR trains its unlabelled pairs: half-way through co-training."""
    return t.warmup_epochs + (t.epochs - t.warmup_epochs) // 2


class NCRRecipe(TrainingRecipe):
    """NCR: mean-hinge warm-up, GMM co-divide on its own per-sample loss, co-rectified
    soft-margin hardest-negative hinge, unlabelled pairs from half-way (see module doc)."""

    name = "ncr"
    divides = True

    def warmup_loss(self, b: Batch, emb: dict, cfg: PairsiftConfig, epoch: int) -> torch.Tensor:
        total = torch.zeros((), dtype=torch.float32)
        for txt in text_views(emb):
            total = total + BL.mean_hinge_costs(_sims(emb["img"], txt), cfg.train.margin).mean()
        return total

    def divide(
        self, heads: ProjectionHeads, data: PairEmbeddings, cfg: PairsiftConfig, seed: int,
        memory: UncertaintyMemory | None = None, neighbours: NeighbourScores | None = None,
    ) -> DividedPairs:
        losses = ncr_per_sample_loss(heads, data, cfg.train, seed)
        return DividedPairs(ncr_division(losses, cfg.division.clean_threshold), None,
                            {"loss": losses})

    def loss(self, b: Batch, emb: dict, cfg: PairsiftConfig, epoch: int) -> torch.Tensor:
        """(Σ labelled + Σ unlabelled hinge) / B: NCR sums each part over its batch."""
        d, margin = b.div, cfg.train.margin
        assert d is not None
        labelled = d["clean"] | d["hard"]
        parts = [(labelled, d["p_clean"])]
        if epoch >= unlabelled_starts(cfg.train):
            parts.append((~labelled, None))
        peer = None
        if b.peer is not None and len(parts) > 1:
            with torch.no_grad():
                peer = text_views(embed_batch(b.peer, b)), b.peer.image(b.img)
        total = torch.zeros((), dtype=torch.float32)
        for v, txt in enumerate(text_views(emb)):
            for rows, w in parts:
                if int(rows.sum()) < 2:
                    continue
                img, cap = emb["img"][rows], txt[rows]
                pred = BL.ncr_prediction(_sims(img, cap).detach(), margin)
                if w is not None:  # co-rectified: w·1 + (1 − w)·P
                    target = w[rows] + (1.0 - w[rows]) * pred
                elif peer is not None:  # the two nets' mean prediction
                    other = _sims(peer[1][rows], peer[0][v][rows])
                    target = 0.5 * (pred + BL.ncr_prediction(other, margin))
                else:
                    target = pred
                total = total + hinge_topk(img, cap, soft_margin(target, margin), 1).sum()
        return total / b.img.shape[0]


def decl_division(
    heads: ProjectionHeads, data: PairEmbeddings, t: TrainConfig, seed: int
) -> DividedPairs:
    """DECL's division of every pair under ``heads``, in shuffled batches: matched (clean)
    when its own two-way evidence share is the row's largest, else noisy. ``p_clean`` is
    that share (a ranking, not a posterior), ``uncertainty`` DECL's K/S_i2t + K/S_t2i."""
    img, txt = heads.embed_pairs(data.image, data.text)
    n = len(data)
    matched, share, unc = np.zeros(n, dtype=bool), np.zeros(n), np.zeros(n)
    with torch.no_grad():
        for rows in _batches(n, t.batch_size, seed):
            idx = torch.from_numpy(rows)
            m, s, u = BL.decl_opinion(_sims(img[idx], txt[idx]), t.evidence_tau)
            matched[rows], share[rows], unc[rows] = m.numpy(), s.numpy(), u.numpy()
    division = Division(np.where(matched, "clean", "noisy"), share, matched.astype(float), unc)
    return DividedPairs(division, None, {"evidence_share": share, "uncertainty": unc})


class DECLRecipe(TrainingRecipe):
    """DECL: evidential risk + robust dynamic hinge, evidence-based division (module doc).
    Per-pair weights (the final model's) weigh each pair's terms."""

    name = "decl"
    divides = True
    accepts_weights = True

    def warmup_loss(self, b: Batch, emb: dict, cfg: PairsiftConfig, epoch: int) -> torch.Tensor:
        everyone = torch.ones(b.img.shape[0], dtype=torch.bool)
        return self._loss(b, emb, cfg, epoch, everyone)

    def loss(self, b: Batch, emb: dict, cfg: PairsiftConfig, epoch: int) -> torch.Tensor:
        assert b.div is not None
        return self._loss(b, emb, cfg, epoch, b.div["clean"] | b.div["hard"])

    def divide(
        self, heads: ProjectionHeads, data: PairEmbeddings, cfg: PairsiftConfig, seed: int,
        memory: UncertaintyMemory | None = None, neighbours: NeighbourScores | None = None,
    ) -> DividedPairs:
        return decl_division(heads, data, cfg.train, seed)

    def _loss(
        self, b: Batch, emb: dict, cfg: PairsiftConfig, epoch: int, matched: torch.Tensor
    ) -> torch.Tensor:
        """mean(risk) + λ1·Σ hinge over matched pairs (DECL's reduction), each pair's terms
        times its weight (normalised to mean 1 over the batch)."""
        t = cfg.train
        w = torch.ones(b.img.shape[0]) if b.weight is None else b.weight.to(torch.float32)
        w = w / w.mean().clamp_min(1e-12)
        k = BL.decl_negatives(epoch, t.warmup_epochs, t.batch_size, t.robust_topk)
        total = torch.zeros((), dtype=torch.float32)
        for txt in text_views(emb):
            sims = _sims(emb["img"], txt)
            risk = BL.decl_risk(sims, t.evidence_tau, t.kl_weight, matched)
            hinge = BL.robust_dynamic_hinge(torch.tanh(sims), t.margin, k)
            total = total + (w * risk).mean()
            total = total + BL.DECL_HINGE_WEIGHT * (w * hinge)[matched].sum()
        return total


__all__ = [
    "DECLRecipe", "NCRRecipe", "decl_division", "ncr_division", "ncr_per_sample_loss",
    "unlabelled_starts",
]
