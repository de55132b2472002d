"""Noise-robust training of the projection heads on precomputed embeddings (DESIGN §2, §5).

``cfg.train.loss`` picks the recipe:

- ``pairsift``: RCAR warm-up (multi-task: top-k hinge + evidential + complementary), then
  every epoch re-score all pairs against a fixed bank, fit the beta mixture on a histogram of
  the losses, divide (UCPM, with the memory for self-correction) and train kept pairs with the
  trusted-margin hinge and the soft-label-weighted evidential loss, noisy pairs only through
  the complementary loss, plus UML mutual learning when a target language is present.
- ``ncr``: NCR — warm-up with the top-k hinge, then GMM division of per-pair losses and the
  soft-margin hinge with co-rectified labels, clean and noisy sub-batches apart.
- ``decl``: DECL — evidential loss (KL annealed over warm-up) plus the scheduled hinge.
- ``rcl``: complementary contrastive loss only.
- ``contrastive``: plain symmetric InfoNCE on every pair (the "train on all" baseline).

``cfg.train.co_teaching`` trains two heads, each on the other's division (NCR co-divide).
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from pairsift.models import losses as L
from pairsift.models.config import DivisionConfig, PairsiftConfig
from pairsift.models.division import Division, UncertaintyMemory, divide
from pairsift.models.heads import ProjectionHeads
from pairsift.models.metrics import recall_at_k
from pairsift.models.mixture import BetaMixture, histogram
from pairsift.models.pairdata import PairEmbeddings, load_embeddings_parquet
from pairsift.models.scoring import build_scoring_state, loss_range, score_batch

__all__ = [
    "PairEmbeddings",
    "TrainResult",
    "train",
    "load_embeddings_parquet",
    "divide_pairs",
    "translation_trust",
]

METHODS = ("pairsift", "ncr", "decl", "rcl", "contrastive")


@dataclass
class TrainResult:
    heads: ProjectionHeads
    history: list[dict] = field(default_factory=list)
    memory: UncertaintyMemory | None = None
    division: Division | None = None


@dataclass
class _Batch:
    img: torch.Tensor
    txt: torch.Tensor
    tgt: dict[str, torch.Tensor]
    div: dict[str, torch.Tensor] | None  # label masks, soft labels, uncertainty


def _division_cfg(cfg: PairsiftConfig) -> DivisionConfig:
    return dataclasses.replace(
        cfg.division,
        refurbish=cfg.division.refurbish and cfg.train.refurbish,
        fisher_soften=cfg.division.fisher_soften and cfg.train.fisher_soften,
    )


def divide_pairs(
    heads: ProjectionHeads,
    data: PairEmbeddings,
    cfg: PairsiftConfig,
    seed: int,
    memory: UncertaintyMemory | None = None,
    method: str | None = None,
) -> tuple[Division, BetaMixture | None, dict[str, np.ndarray]]:
    """Score every pair against a fixed bank, fit the mixture on a histogram, divide."""
    state = build_scoring_state(heads, data, cfg.train, seed)
    scores = score_batch(state, data.image, data.text, data.text_tgt or None, data.text_src_ml)
    lo, hi = loss_range(cfg.train)
    dcfg = _division_cfg(cfg)
    if method is not None:
        dcfg = dataclasses.replace(dcfg, method=method)
    mixture = None
    if dcfg.method in ("pairsift", "bmm"):
        counts = histogram(scores["loss"], lo, hi, cfg.mixture.bins)
        if np.count_nonzero(counts) >= 2:
            mixture = BetaMixture.fit_histogram(counts, lo, hi, cfg.mixture)
    return divide(scores, mixture, dcfg, memory), mixture, scores


def translation_trust(scores: dict[str, np.ndarray], cfg: PairsiftConfig) -> dict[str, np.ndarray]:
    """Per language, P(the translation agrees with its source) (NRF).

    A beta mixture on the disagreement (1 − translation consistency)/2, fitted like the loss
    mixture; the low-disagreement component's posterior is the trust. Languages without a
    consistency score (no multilingual source embedding) get none.
    """
    out: dict[str, np.ndarray] = {}
    for key in sorted(scores):
        if not key.startswith("translation_consistency_"):
            continue
        disagreement = (1.0 - np.asarray(scores[key], dtype=np.float64)) / 2.0
        counts = histogram(disagreement, 0.0, 1.0, cfg.mixture.bins)
        if np.count_nonzero(counts) < 2:
            continue
        mix_cfg = dataclasses.replace(cfg.mixture, partial_noise=False)
        mixture = BetaMixture.fit_histogram(counts, 0.0, 1.0, mix_cfg)
        out[key[len("translation_consistency_") :]] = mixture.posterior_clean(disagreement)
    return out


def _division_tensors(
    div: Division, trust: dict[str, np.ndarray] | None = None
) -> dict[str, torch.Tensor]:
    extra = {f"trust_{k}": torch.from_numpy(v.astype(np.float32)) for k, v in (trust or {}).items()}
    return extra | {
        "clean": torch.from_numpy(div.label == "clean"),
        "hard": torch.from_numpy(div.label == "hard"),
        "noisy": torch.from_numpy(div.label == "noisy"),
        "soft": torch.from_numpy(div.soft_label.astype(np.float32)),
        "p_clean": torch.from_numpy(div.p_clean.astype(np.float32)),
        "unc": torch.from_numpy(div.uncertainty.astype(np.float32)),
    }


def _warmup_loss(b: _Batch, emb: dict, cfg: PairsiftConfig, epoch: int) -> torch.Tensor:
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


def _pairsift_loss(b: _Batch, emb: dict, cfg: PairsiftConfig) -> torch.Tensor:
    t, d = cfg.train, b.div
    assert d is not None
    kept = ~d["noisy"]
    soft = (
        d["soft"]
        if t.refurbish or t.fisher_soften
        else torch.where(d["hard"], d["soft"], torch.ones_like(d["soft"]))
    )
    if t.trusted_margin:
        margin = L.trusted_margin(
            soft,
            d["unc"],
            d["hard"],
            t.margin,
            cfg.division.uncertainty_threshold,
            t.trusted_margin_power,
        )
    else:
        margin = torch.full_like(soft, t.margin)
    # The soft label sets the margin (UCPM); the mixture posterior weighs the contrastive and
    # evidential terms (RCAR): a hard pair's b_self is small by construction (belief is spread
    # over K+1 captions and u), and weighting by it would all but drop clean hard pairs.
    p_clean = d["p_clean"]
    total = torch.zeros((), dtype=torch.float32)
    img = emb["img"]
    views = [(None, emb["txt"]), *emb["tgt"].items()]
    for lang, txt in views:
        # a target view also needs the translation to agree with its source (NRF)
        w = p_clean if lang is None else p_clean * d.get(f"trust_{lang}", torch.ones_like(p_clean))
        use = kept if lang is None else kept & (w >= 0.5)
        if int(use.sum()) >= 2:
            hinge = L.hinge_topk(img[use], txt[use], margin[use], topk=1)
            evid = L.evidential_loss(img[use], txt[use], t.evidence_tau, t.kl_weight)
            nce = L.info_nce(img[use], txt[use], t.temperature)
            total = total + hinge.mean() + (w[use] * (evid + nce)).mean()
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


def _ncr_loss(b: _Batch, emb: dict, cfg: PairsiftConfig) -> torch.Tensor:
    t, d = cfg.train, b.div
    assert d is not None
    margin = L.soft_margin(d["soft"], t.margin)
    total = torch.zeros((), dtype=torch.float32)
    for txt in [emb["txt"], *emb["tgt"].values()]:
        for part in (d["clean"] | d["hard"], d["noisy"]):
            if int(part.sum()) >= 2:
                total = total + L.hinge_topk(emb["img"][part], txt[part], margin[part], 1).mean()
    return total


def _plain_loss(b: _Batch, emb: dict, cfg: PairsiftConfig, epoch: int) -> torch.Tensor:
    t = cfg.train
    total = torch.zeros((), dtype=torch.float32)
    for txt in [emb["txt"], *emb["tgt"].values()]:
        if t.loss == "contrastive":
            total = total + L.info_nce(emb["img"], txt, t.temperature).mean()
        elif t.loss == "rcl":
            total = total + L.complementary_loss(emb["img"], txt, t.temperature).mean()
        else:  # decl
            ramp = min(1.0, (epoch + 1) / max(t.warmup_epochs, 1))
            topk = L.hinge_schedule(epoch, t.warmup_epochs, t.warmup_topk)
            total = (
                total
                + L.evidential_loss(emb["img"], txt, t.evidence_tau, t.kl_weight * ramp).mean()
            )
            total = total + L.hinge_topk(emb["img"], txt, t.margin, topk).mean()
    return total


def _batch_loss(heads: ProjectionHeads, b: _Batch, cfg: PairsiftConfig, epoch: int) -> torch.Tensor:
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


def _rsum(heads: ProjectionHeads, val: PairEmbeddings) -> float:
    with torch.no_grad():
        img = heads.image(torch.from_numpy(np.asarray(val.image, dtype=np.float32))).numpy()
        txt = heads.text(torch.from_numpy(np.asarray(val.text, dtype=np.float32))).numpy()
    return recall_at_k(img, txt)["rsum"]


def _ncr_division(div: Division, scores: dict[str, np.ndarray]) -> Division:
    """NCR co-rectified labels: p_clean·1 + (1 − p_clean)·model prediction."""
    soft = div.p_clean + (1.0 - div.p_clean) * np.asarray(scores["match_prob"])
    return dataclasses.replace(div, soft_label=np.clip(soft, 0.0, 1.0))


def train(
    data: PairEmbeddings,
    cfg: PairsiftConfig,
    val: PairEmbeddings | None = None,
    identity_init: bool = False,
    progress: Callable[[dict], None] | None = None,
) -> TrainResult:
    """Train projection heads with the recipe ``cfg.train.loss`` (see module doc)."""
    t = cfg.train
    if t.loss not in METHODS:
        raise ValueError(f"unknown train.loss {t.loss!r}; choose from {METHODS}")
    if len(data) < 2:
        raise ValueError("training needs at least 2 pairs")
    data.check_finite()
    if len(data) > t.max_fit_pairs:
        rows = np.sort(np.random.default_rng(cfg.seed).choice(len(data), t.max_fit_pairs, False))
        data = data.subset(rows)
    n = len(data)
    torch.manual_seed(cfg.seed)
    out_dim = data.image.shape[1] if identity_init else t.head_dim
    tgt_dims = {lang: int(v.shape[1]) for lang, v in sorted(data.text_tgt.items())}
    n_nets = 2 if t.co_teaching else 1
    nets = [
        ProjectionHeads(
            data.image.shape[1], data.text.shape[1], out_dim, identity_init, tgt_dims or None
        )
        for _ in range(n_nets)
    ]
    opts = [torch.optim.AdamW(h.parameters(), lr=t.lr, weight_decay=t.weight_decay) for h in nets]
    img_all = torch.from_numpy(np.asarray(data.image, dtype=np.float32))
    txt_all = torch.from_numpy(np.asarray(data.text, dtype=np.float32))
    tgt_all = {
        k: torch.from_numpy(np.asarray(v, dtype=np.float32))
        for k, v in sorted(data.text_tgt.items())
    }
    dcfg = cfg.division
    memories = [
        UncertaintyMemory(n, dcfg.memory_window, dcfg.fluctuation_threshold)
        if dcfg.self_correction and t.loss == "pairsift"
        else None
        for _ in nets
    ]
    gen = torch.Generator().manual_seed(cfg.seed)
    history: list[dict] = []
    best_rsum, best_state, stale = -np.inf, None, 0
    division: Division | None = None
    for epoch in range(t.epochs):
        start = time.perf_counter()
        entry: dict = {"epoch": epoch, "method": t.loss}
        divisions: list[dict[str, torch.Tensor] | None] = [None] * n_nets
        if t.loss in ("pairsift", "ncr") and epoch >= t.warmup_epochs:
            for i, heads in enumerate(nets):
                heads.eval()
                method = "gmm" if t.loss == "ncr" else None
                div, mixture, scores = divide_pairs(
                    heads, data, cfg, cfg.seed + epoch, memories[i], method
                )
                if t.loss == "ncr":
                    div = _ncr_division(div, scores)
                use_trust = t.loss == "pairsift" and t.translation_trust
                trust = translation_trust(scores, cfg) if use_trust else None
                divisions[(i + 1) % n_nets] = _division_tensors(div, trust)  # co-divide: swap
                if i == 0:
                    division = div
                    entry.update({f"n_{k}": v for k, v in div.counts().items()})
                    if mixture is not None:
                        entry["noise_ratio"] = mixture.noise_ratio
        total, batches = 0.0, 0
        for i, (heads, opt) in enumerate(zip(nets, opts, strict=True)):
            heads.train()
            order = torch.randperm(n, generator=gen)
            for s in range(0, n, t.batch_size):
                idx = order[s : s + t.batch_size]
                if idx.numel() < 2:
                    continue
                d = divisions[i]
                batch = _Batch(
                    img_all[idx],
                    txt_all[idx],
                    {k: v[idx] for k, v in tgt_all.items()},
                    None if d is None else {k: v[idx] for k, v in d.items()},
                )
                loss = _batch_loss(heads, batch, cfg, epoch)
                opt.zero_grad()
                loss.backward()
                opt.step()
                if i == 0:
                    total += float(loss.detach())
                    batches += 1
        nets[0].eval()
        entry["train_loss"] = total / max(batches, 1)
        if val is not None:
            rsum = _rsum(nets[0], val)
            entry["val_rsum"] = rsum
            if rsum > best_rsum:
                best_rsum, best_state, stale = rsum, copy.deepcopy(nets[0].state_dict()), 0
            else:
                stale += 1
        entry["seconds"] = time.perf_counter() - start
        history.append(entry)
        if progress is not None:
            progress(dict(entry))
        if val is not None and stale >= t.patience and epoch >= t.warmup_epochs:
            break
    heads = nets[0]
    if best_state is not None:
        heads.load_state_dict(best_state)
    heads.eval()
    memory = memories[0]
    if t.loss in ("pairsift", "ncr"):
        method = "gmm" if t.loss == "ncr" else None
        division, _, _ = divide_pairs(heads, data, cfg, cfg.seed + t.epochs, memory, method)
    return TrainResult(heads=heads, history=history, memory=memory, division=division)
