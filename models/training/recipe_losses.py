"""Per-batch losses of each training recipe (``train.loss``), composed from models/training/losses.py.

The trainer (:mod:`pairsift.models.training.trainer`) owns the epochs, the nets and the divisions;
this module turns one batch (and, in the robust phase, its rows of the division) into the
scalar to minimise. Kept apart so each recipe reads as one function.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pairsift.models.config import PairsiftConfig
from pairsift.models.training import losses as L
from pairsift.models.training.heads import ProjectionHeads


@dataclass
class Batch:
    """One batch of pair embeddings and, in the robust phase, its rows of the division."""

    img: torch.Tensor
    txt: torch.Tensor
    tgt: dict[str, torch.Tensor]
    div: dict[str, torch.Tensor] | None  # label masks, soft labels, uncertainty
    weight: torch.Tensor | None = None  # per-pair weights of the plain losses (train weights=)


def _warmup_loss(b: Batch, emb: dict, cfg: PairsiftConfig, epoch: int) -> torch.Tensor:
    t = cfg.train
    ramp = min(1.0, (epoch + 1) / max(t.warmup_epochs, 1))
    total = torch.zeros((), dtype=torch.float32)
    for txt in [emb["txt"], *emb["tgt"].values()]:
        total = total + L.hinge_topk(emb["img"], txt, t.margin, t.warmup_topk).mean()
        if t.loss == "pairsift":
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
        for lang, tgt in emb["tgt"].items():
            w = p_clean * d.get(f"trust_{lang}", torch.ones_like(p_clean))
            weight = torch.where(d["noisy"], torch.zeros_like(w), w)
            total = (
                total
                + t.mutual_weight
                * L.mutual_learning_loss(
                    img, emb["txt"], tgt, weight, t.temperature, t.push_margin
                ).mean()
            )
    return total


def _ncr_loss(b: Batch, emb: dict, cfg: PairsiftConfig) -> torch.Tensor:
    t, d = cfg.train, b.div
    assert d is not None
    margin = L.soft_margin(d["soft"], t.margin)
    total = torch.zeros((), dtype=torch.float32)
    for txt in [emb["txt"], *emb["tgt"].values()]:
        for part in (d["clean"] | d["hard"], d["noisy"]):
            if int(part.sum()) >= 2:
                total = total + L.hinge_topk(emb["img"][part], txt[part], margin[part], 1).mean()
    return total


def _plain_loss(b: Batch, emb: dict, cfg: PairsiftConfig, epoch: int) -> torch.Tensor:
    t = cfg.train

    def reduce(per_pair: torch.Tensor) -> torch.Tensor:
        if b.weight is None:
            return per_pair.mean()
        return _weighted_mean(per_pair, b.weight, floor=1e-12)

    total = torch.zeros((), dtype=torch.float32)
    for txt in [emb["txt"], *emb["tgt"].values()]:
        if t.loss == "contrastive":
            total = total + reduce(L.info_nce(emb["img"], txt, t.temperature))
        elif t.loss == "rcl":
            total = total + reduce(L.complementary_loss(emb["img"], txt, t.temperature))
        else:  # decl
            ramp = min(1.0, (epoch + 1) / max(t.warmup_epochs, 1))
            topk = L.hinge_schedule(epoch, t.warmup_epochs, t.warmup_topk)
            total = total + reduce(
                L.evidential_loss(emb["img"], txt, t.evidence_tau, t.kl_weight * ramp)
            )
            total = total + reduce(L.hinge_topk(emb["img"], txt, t.margin, topk))
    return total


def batch_loss(heads: ProjectionHeads, b: Batch, cfg: PairsiftConfig, epoch: int) -> torch.Tensor:
    emb = {
        "img": heads.image(b.img),
        "txt": heads.text(b.txt),
        "tgt": {lang: heads.text(x, lang) for lang, x in b.tgt.items()},
    }
    method = cfg.train.loss
    if method in ("pairsift", "ncr") and b.div is None:
        return _warmup_loss(b, emb, cfg, epoch)
    if method == "pairsift":
        return _pairsift_loss(b, emb, cfg)
    if method == "ncr":
        return _ncr_loss(b, emb, cfg)
    return _plain_loss(b, emb, cfg, epoch)
