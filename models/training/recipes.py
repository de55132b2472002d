"""Training recipes: pairsift, NCR, DECL, RCL and contrastive, as objects sharing one loop.

The trainer (:mod:`pairsift.models.training.trainer`) owns the epochs, the nets and the
divisions; a recipe says whether it divides the pairs and how, and turns one batch (and, in
the robust phase, its rows of the division) into the scalar to minimise, composed from
:mod:`pairsift.models.training.losses`. ``train.loss`` names the recipe. The base class is
:mod:`pairsift.models.training.recipe_base`; the NCR and DECL baselines, trained as their
papers do, live in :mod:`pairsift.models.training.baselines`.
"""

from __future__ import annotations

from abc import abstractmethod

import torch

from pairsift.models.config import PairsiftConfig
from pairsift.models.training import losses as L
from pairsift.models.training.baselines import DECLRecipe, NCRRecipe
from pairsift.models.training.recipe_base import Batch, TrainingRecipe, text_views

__all__ = ["RECIPES", "Batch", "TrainingRecipe", "training_recipe"]


def _warmup_loss(b: Batch, emb: dict, cfg: PairsiftConfig, epoch: int) -> torch.Tensor:
    """RCAR's multi-task warm-up on every pair: the top-k hinge, InfoNCE, the evidential loss
    and the complementary loss, which together slow the memorisation of noisy pairs."""
    t = cfg.train
    ramp = min(1.0, (epoch + 1) / max(t.warmup_epochs, 1))
    total = torch.zeros((), dtype=torch.float32)
    for txt in text_views(emb):
        total = total + L.hinge_topk(emb["img"], txt, t.margin, t.warmup_topk).mean()
        total = total + L.info_nce(emb["img"], txt, t.temperature).mean()
        total = (
            total
            + L.evidential_loss(emb["img"], txt, t.evidence_tau, t.kl_weight * ramp).mean()
        )
        total = (
            total
            + t.complementary_weight
            * L.complementary_loss(emb["img"], txt, t.temperature).mean()
        )
    return total


def _weighted_mean(values: torch.Tensor, weight: torch.Tensor, floor: float = 1.0) -> torch.Tensor:
    """Σ w·v / max(Σ w, floor): the robust phase's floor of 1 keeps a batch of a few doubtful
    pairs from counting as much as a batch of sure ones; per-pair weights given by the caller
    (the final model's) normalise exactly (floor 1e-12)."""
    return (weight * values).sum() / weight.sum().clamp_min(floor)


def _pairsift_loss(b: Batch, emb: dict, cfg: PairsiftConfig) -> torch.Tensor:
    """Robust phase: every pair's InfoNCE weighted by its clean posterior (RCAR), the trusted
    margin hinge and the weighted evidential loss on kept pairs (UCPM, DECL), the
    complementary loss on pairs judged noisy (RCL), and mutual learning across languages."""
    t, d = cfg.train, b.div
    assert d is not None
    kept = ~d["noisy"]
    soft = (
        d["soft"]
        if cfg.division.refurbish or cfg.division.fisher_soften
        else torch.where(d["hard"], d["soft"], torch.ones_like(d["soft"]))
    )
    if t.trusted_margin:
        margin = L.trusted_margin(
            soft,
            d["unc"],
            d["hard"],
            t.margin,
            float(d["unc_thr"]),
            t.trusted_margin_power,
            clean=d["clean"],
        )
    else:
        margin = torch.full_like(soft, t.margin)
    # The soft label sets the margin (UCPM); the mixture posterior weighs the contrastive and
    # evidential terms (RCAR): a hard pair's b_self is small by construction (belief is spread
    # over K+1 captions and u), and weighting by it would all but drop clean hard pairs.
    # The hinge averages the top-k negatives: the hardest one alone (VSE++) drags weak heads
    # towards near-duplicate captions and cost a third of rSum on small sets.
    p_clean = d["p_clean"]
    total = torch.zeros((), dtype=torch.float32)
    img = emb["img"]
    views = [(None, emb["txt"]), *emb["tgt"].items()]
    for lang, txt in views:
        # a target view also needs the translation to agree with its source (NRF)
        w = p_clean if lang is None else p_clean * d.get(f"trust_{lang}", torch.ones_like(p_clean))
        use = kept if lang is None else kept & (w >= 0.5)
        total = total + _weighted_mean(L.info_nce(img, txt, t.temperature), w)
        if int(use.sum()) >= 2:
            hinge = L.hinge_topk(img[use], txt[use], margin[use], topk=t.robust_topk)
            evid = L.evidential_loss(img[use], txt[use], t.evidence_tau, t.kl_weight)
            total = total + hinge.mean() + _weighted_mean(evid, w[use])
        noisy = ~use if lang is not None else d["noisy"]
        if int(noisy.sum()) >= 2:
            total = (
                total
                + t.complementary_weight
                * L.complementary_loss(img[noisy], txt[noisy], t.temperature).mean()
            )
    if t.mutual_learning and emb["tgt"]:
        total = total + _mutual_learning(emb, d, cfg)
    return total


def _mutual_learning(emb: dict, d: dict, cfg: PairsiftConfig) -> torch.Tensor:
    """UML across languages: the pair's clean weight (0 for noisy pairs) and each
    translation's trust (1 where unknown) weigh their own parts of the loss."""
    t, p_clean = cfg.train, d["p_clean"]
    pair = torch.where(d["noisy"], torch.zeros_like(p_clean), p_clean)
    total = torch.zeros((), dtype=torch.float32)
    for lang, tgt in emb["tgt"].items():
        trust = d.get(f"trust_{lang}", torch.ones_like(p_clean))
        loss = L.mutual_learning_loss(emb["img"], emb["txt"], tgt, pair, t.temperature,
                                      t.push_margin, trust)
        total = total + t.mutual_weight * loss.mean()
    return total


class PairsiftRecipe(TrainingRecipe):
    """RCAR multi-task warm-up, then UCPM/RCAR/UML training on the noise fit's division."""

    name = "pairsift"
    divides = crossfits = self_corrects = uses_consistency = uses_translation_trust = True

    def warmup_loss(self, b: Batch, emb: dict, cfg: PairsiftConfig, epoch: int) -> torch.Tensor:
        return _warmup_loss(b, emb, cfg, epoch)

    def loss(self, b: Batch, emb: dict, cfg: PairsiftConfig, epoch: int) -> torch.Tensor:
        return _pairsift_loss(b, emb, cfg)


class _PlainRecipe(TrainingRecipe):
    """A loss on every pair, never divided; per-pair weights allowed."""

    accepts_weights = True

    @abstractmethod
    def per_pair(self, img: torch.Tensor, txt: torch.Tensor, cfg: PairsiftConfig,
                 epoch: int) -> list[torch.Tensor]:
        """The per-pair loss terms of one view, each [B]."""

    def loss(self, b: Batch, emb: dict, cfg: PairsiftConfig, epoch: int) -> torch.Tensor:
        total = torch.zeros((), dtype=torch.float32)
        for txt in text_views(emb):
            for per_pair in self.per_pair(emb["img"], txt, cfg, epoch):
                if b.weight is None:
                    total = total + per_pair.mean()
                else:
                    total = total + _weighted_mean(per_pair, b.weight, floor=1e-12)
        return total


class ContrastiveRecipe(_PlainRecipe):
    """Symmetric InfoNCE on every pair: the "train on all" baseline and OUT/model's loss."""

    name = "contrastive"

    def per_pair(self, img: torch.Tensor, txt: torch.Tensor, cfg: PairsiftConfig,
                 epoch: int) -> list[torch.Tensor]:
        return [L.info_nce(img, txt, cfg.train.temperature)]


class RCLRecipe(_PlainRecipe):
    """RCL's complementary contrastive loss alone."""

    name = "rcl"

    def per_pair(self, img: torch.Tensor, txt: torch.Tensor, cfg: PairsiftConfig,
                 epoch: int) -> list[torch.Tensor]:
        return [L.complementary_loss(img, txt, cfg.train.temperature)]


RECIPES: dict[str, TrainingRecipe] = {
    r.name: r
    for r in (PairsiftRecipe(), NCRRecipe(), DECLRecipe(), RCLRecipe(), ContrastiveRecipe())
}


def training_recipe(name: str) -> TrainingRecipe:
    """The recipe for ``train.loss`` (an unknown name is an error that lists the choices)."""
    if name not in RECIPES:
        raise ValueError(f"unknown train.loss {name!r}; choose from {tuple(RECIPES)}")
    return RECIPES[name]
