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

from pairsift.models.config import PairsiftConfig, TrainConfig
from pairsift.models.metrics import recall_at_k
from pairsift.models.noise.division import Division, UncertaintyMemory
from pairsift.models.noise.mixture import BetaMixture
from pairsift.models.pairdata import PairEmbeddings, load_embeddings_parquet
from pairsift.models.training.epoch_division import (
    NeighbourScores,
    crossfit_scorer,
    crossfit_scores,
    divide_pairs,
    divide_scores,
    divide_with,
    fold_ids,
    neighbour_consistency,
    null_losses,
    translation_trust,
)
from pairsift.models.training.heads import ProjectionHeads
from pairsift.models.training.recipe_losses import Batch, batch_loss

__all__ = [
    "PairEmbeddings",
    "TrainResult",
    "train",
    "load_embeddings_parquet",
    "divide_pairs",
    "divide_scores",
    "crossfit_scorer",
    "crossfit_scores",
    "fold_ids",
    "translation_trust",
]

METHODS = ("pairsift", "ncr", "decl", "rcl", "contrastive")
CENTRE_MODES = ("auto", "always", "never")


@dataclass
class TrainResult:
    heads: ProjectionHeads
    history: list[dict] = field(default_factory=list)
    memory: UncertaintyMemory | None = None
    division: Division | None = None
    fold_heads: list[ProjectionHeads] = field(default_factory=list)  # cross-fitting heads
    folds: np.ndarray | None = None  # each training row's fold (with fold_heads)


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
        "unc_thr": torch.tensor(_margin_threshold(div), dtype=torch.float32),
    }


def _margin_threshold(div: Division) -> float:
    """The u_thr the division used; a division without one (bmm, gmm) shrinks nothing."""
    thr = div.uncertainty_threshold
    return float(thr) if np.isfinite(thr) else 0.0


def _rsum(heads: ProjectionHeads, val: PairEmbeddings) -> float:
    with torch.no_grad():
        img = heads.image(torch.from_numpy(np.asarray(val.image, dtype=np.float32))).numpy()
        txt = heads.text(torch.from_numpy(np.asarray(val.text, dtype=np.float32))).numpy()
    return recall_at_k(img, txt)["rsum"]


def _ncr_division(div: Division, scores: dict[str, np.ndarray]) -> Division:
    """NCR co-rectified labels: p_clean·1 + (1 − p_clean)·model prediction."""
    soft = div.p_clean + (1.0 - div.p_clean) * np.asarray(scores["match_prob"])
    return dataclasses.replace(div, soft_label=np.clip(soft, 0.0, 1.0))


@dataclass
class _Net:
    """Heads, their optimiser and the rows they train on (all rows, or one fold's complement)."""

    heads: ProjectionHeads
    opt: torch.optim.Optimizer
    rows: torch.Tensor


def _new_net(data: PairEmbeddings, cfg: PairsiftConfig, identity_init: bool,
             rows: np.ndarray, centres: dict[str, np.ndarray] | None = None) -> _Net:
    t = cfg.train
    out_dim = data.image.shape[1] if identity_init else t.head_dim
    tgt_dims = {lang: int(v.shape[1]) for lang, v in sorted(data.text_tgt.items())}
    heads = ProjectionHeads(
        data.image.shape[1], data.text.shape[1], out_dim, identity_init, tgt_dims or None,
        centred=sorted(centres) if centres else None,
    )
    for name, mean in (centres or {}).items():
        heads.set_centre(name, torch.from_numpy(mean))
    opt = torch.optim.AdamW(heads.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    return _Net(heads, opt, torch.from_numpy(np.asarray(rows, dtype=np.int64)))


def _use_folds(cfg: PairsiftConfig, n: int) -> int:
    """Fold count for cross-fitted division: only for pairsift, and only on sets small enough
    (``crossfit_max_pairs``) for the heads to memorise them within the warm-up."""
    t = cfg.train
    small = n <= t.crossfit_max_pairs
    return t.division_folds if t.loss == "pairsift" and t.division_folds >= 2 and small else 0


def train(
    data: PairEmbeddings,
    cfg: PairsiftConfig,
    val: PairEmbeddings | None = None,
    identity_init: bool = False,
    progress: Callable[[dict], None] | None = None,
    folds: np.ndarray | None = None,
    weights: np.ndarray | None = None,
) -> TrainResult:
    """Train projection heads with the recipe ``cfg.train.loss`` (see module doc).

    With ``train.division_folds`` = k ≥ 2 (pairsift), k extra fold heads train beside the
    main heads, each on all pairs outside its fold, and every division scores a pair with the
    heads that never saw it (:func:`crossfit_scores`). ``folds`` fixes each row's fold (the
    pipeline derives it from the pair key so its score pass can use the same heads); by
    default it is drawn from the seed. ``weights`` (one per pair, ≥ 0) weigh each pair's
    term in the plain losses (contrastive, rcl, decl): the final model weighs the kept pairs
    by their clean posterior (``train.final_weight_power``).
    """
    t = cfg.train
    if t.loss not in METHODS:
        raise ValueError(f"unknown train.loss {t.loss!r}; choose from {METHODS}")
    if len(data) < 2:
        raise ValueError("training needs at least 2 pairs")
    data.check_finite()
    weights = _check_weights(weights, len(data), t.loss)
    if folds is not None and len(folds) != len(data):
        raise ValueError(f"folds has {len(folds)} entries for {len(data)} pairs")
    if len(data) > t.max_fit_pairs:
        rows = np.sort(np.random.default_rng(cfg.seed).choice(len(data), t.max_fit_pairs, False))
        data = data.subset(rows)
        folds = None if folds is None else np.asarray(folds)[rows]
        weights = None if weights is None else weights[rows]
    n = len(data)
    torch.manual_seed(cfg.seed)
    k = _use_folds(cfg, n)
    if k:
        folds = fold_ids(n, k, cfg.seed) if folds is None else np.asarray(folds, dtype=np.int64)
        if folds.min() < 0 or folds.max() >= k:
            raise ValueError(f"fold ids must lie in [0, {k})")
    everything = np.arange(n)
    centres = input_centres(data, t, identity_init)
    nets = [_new_net(data, cfg, identity_init, everything, centres)
            for _ in range(2 if t.co_teaching else 1)]
    fold_nets = [
        _new_net(data, cfg, identity_init, np.flatnonzero(folds != f), centres) for f in range(k)
    ] if k else []
    img_all = torch.from_numpy(np.asarray(data.image, dtype=np.float32))
    txt_all = torch.from_numpy(np.asarray(data.text, dtype=np.float32))
    tgt_all = {
        key: torch.from_numpy(np.asarray(v, dtype=np.float32))
        for key, v in sorted(data.text_tgt.items())
    }
    dcfg = cfg.division
    with_memory = dcfg.self_correction and t.loss == "pairsift"
    memories = [
        UncertaintyMemory(n, dcfg.memory_window, dcfg.fluctuation_threshold) if with_memory else None
        for _ in range(1 if k else len(nets))
    ]
    gen = torch.Generator().manual_seed(cfg.seed)
    history: list[dict] = []
    # fixed over the epochs: it reads the tower embeddings, not the heads
    neighbours = neighbour_consistency(data, cfg, cfg.seed) if t.loss == "pairsift" else None
    best_rsum, best_state, stale = -np.inf, None, 0
    division: Division | None = None
    for epoch in range(t.epochs):
        start = time.perf_counter()
        entry: dict = {"epoch": epoch, "method": t.loss}
        divisions: list[dict[str, torch.Tensor] | None] = [None] * len(nets)
        if t.loss in ("pairsift", "ncr") and epoch >= t.warmup_epochs:
            for i, (div, mixture, scores) in enumerate(
                _epoch_divisions(nets, fold_nets, folds, data, cfg, epoch, memories, neighbours)
            ):
                use_trust = t.loss == "pairsift" and t.translation_trust
                trust = translation_trust(scores, cfg) if use_trust else None
                tensors = _division_tensors(div, trust)
                if k:  # one cross-fitted division serves every net
                    divisions = [tensors] * len(nets)
                else:  # co-divide: each net trains on the other's division
                    divisions[(i + 1) % len(nets)] = tensors
                if i == 0:
                    division = div
                    entry.update({f"n_{key}": v for key, v in div.counts().items()})
                    if mixture is not None:
                        entry["noise_ratio"] = mixture.noise_ratio
        entry["train_loss"] = _train_epoch(
            nets, fold_nets, divisions, (img_all, txt_all, tgt_all), cfg, epoch, gen,
            None if weights is None else torch.from_numpy(weights.astype(np.float32)),
        )
        nets[0].heads.eval()
        if val is not None:
            rsum = _rsum(nets[0].heads, val)
            entry["val_rsum"] = rsum
            if rsum > best_rsum:
                best_rsum, best_state, stale = rsum, copy.deepcopy(nets[0].heads.state_dict()), 0
            else:
                stale += 1
        entry["seconds"] = time.perf_counter() - start
        history.append(entry)
        if progress is not None:
            progress(dict(entry))
        if val is not None and stale >= t.patience and epoch >= t.warmup_epochs:
            break
    heads = nets[0].heads
    if best_state is not None:
        heads.load_state_dict(best_state)
    heads.eval()
    memory = memories[0]
    if t.loss in ("pairsift", "ncr"):
        final = _epoch_divisions(
            nets[:1], fold_nets, folds, data, cfg, t.epochs, memories[:1], neighbours
        )
        division = final[0][0]
    return TrainResult(
        heads=heads, history=history, memory=memory, division=division,
        fold_heads=[net.heads for net in fold_nets], folds=folds if k else None,
    )


def input_centres(
    data: PairEmbeddings, t: TrainConfig, identity_init: bool = False
) -> dict[str, np.ndarray]:
    """Mean embedding of each input the heads should centre (``train.centre_inputs``)."""
    if t.centre_inputs not in CENTRE_MODES:
        raise ValueError(f"unknown train.centre_inputs {t.centre_inputs!r}; choose from {CENTRE_MODES}")
    if t.centre_inputs == "never" or (t.centre_inputs == "auto" and identity_init):
        return {}
    inputs = {"image": data.image, "text": data.text, **data.text_tgt}
    return {
        name: np.asarray(x, dtype=np.float64).mean(axis=0).astype(np.float32)
        for name, x in sorted(inputs.items())
        if t.centre_inputs == "always" or mean_cosine(x) > t.centre_threshold
    }


def mean_cosine(x: np.ndarray, max_rows: int = 4096) -> float:
    """Mean cosine between distinct rows (of an evenly spaced sample of at most ``max_rows``):
    about 0 for embeddings spread in every direction, near 1 when all sit in a narrow cone."""
    x = np.asarray(x, dtype=np.float64)
    x = x[:: max(1, len(x) // max_rows)][:max_rows]
    n = len(x)
    if n < 2:
        return 0.0
    unit = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    total = float(np.square(unit.sum(axis=0)).sum())  # sum over all ordered pairs, self included
    return (total - n) / (n * (n - 1))


def _check_weights(weights: np.ndarray | None, n: int, loss: str) -> np.ndarray | None:
    if weights is None:
        return None
    if loss not in ("contrastive", "rcl", "decl"):
        raise ValueError(f"per-pair weights apply to the plain losses, not train.loss {loss!r}")
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n,):
        raise ValueError(f"weights has shape {w.shape} for {n} pairs")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or not np.any(w > 0):
        raise ValueError("weights must be finite, non-negative and not all zero")
    return w


def _epoch_divisions(
    nets: list[_Net], fold_nets: list[_Net], folds: np.ndarray | None, data: PairEmbeddings,
    cfg: PairsiftConfig, epoch: int, memories: list[UncertaintyMemory | None],
    neighbours: NeighbourScores | None = None,
) -> list[tuple[Division, BetaMixture | None, dict[str, np.ndarray]]]:
    """This epoch's division per net: one cross-fitted division, or one per net (co-divide)."""
    seed = cfg.seed + epoch
    method = "gmm" if cfg.train.loss == "ncr" else None
    if fold_nets:
        assert folds is not None
        for net in fold_nets:
            net.heads.eval()
        score = crossfit_scorer([net.heads for net in fold_nets], folds, data, cfg, seed)
        scores = score(data)
        null = null_losses(score, data, cfg, seed, method)
        div, mixture = divide_with(scores, cfg, memories[0], method, null, neighbours)
        return [(div, mixture, scores)]
    out = []
    for net, memory in zip(nets, memories, strict=True):
        net.heads.eval()
        div, mixture, scores = divide_pairs(
            net.heads, data, cfg, seed, memory, method, neighbours
        )
        if cfg.train.loss == "ncr":
            div = _ncr_division(div, scores)
        out.append((div, mixture, scores))
    return out


def _train_epoch(
    nets: list[_Net], fold_nets: list[_Net], divisions: list[dict[str, torch.Tensor] | None],
    tensors: tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]],
    cfg: PairsiftConfig, epoch: int, gen: torch.Generator,
    weight_all: torch.Tensor | None = None,
) -> float:
    """One pass of every net over its rows; returns the first net's mean batch loss."""
    img_all, txt_all, tgt_all = tensors
    total, batches = 0.0, 0
    fold_division = divisions[0]
    for i, net in enumerate([*nets, *fold_nets]):
        d = divisions[i] if i < len(nets) else fold_division
        net.heads.train()
        order = net.rows[torch.randperm(net.rows.numel(), generator=gen)]
        for s in range(0, order.numel(), cfg.train.batch_size):
            idx = order[s : s + cfg.train.batch_size]
            if idx.numel() < 2:
                continue
            batch = Batch(
                img_all[idx],
                txt_all[idx],
                {key: v[idx] for key, v in tgt_all.items()},
                None if d is None else {key: v[idx] if v.ndim else v for key, v in d.items()},
                None if weight_all is None else weight_all[idx],
            )
            loss = batch_loss(net.heads, batch, cfg, epoch)
            net.opt.zero_grad()
            loss.backward()
            net.opt.step()
            if i == 0:
                total += float(loss.detach())
                batches += 1
    return total / max(batches, 1)
