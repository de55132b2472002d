"""Noise-robust training of the projection heads on precomputed embeddings.

One loop for every recipe (:mod:`pairsift.models.training.recipes`, named by
``train.loss``): pairsift (RCAR warm-up, then each epoch the one noise fit divides every pair
and the kept pairs train with the margin hinge (UCPM's trusted margin where
``train.trusted_margin`` is on) and the p_clean-weighted evidential loss,
noisy pairs only through the complementary loss, plus UML mutual learning), the NCR and
DECL baselines (each divides as its paper does, :mod:`pairsift.models.training.baselines`),
RCL and plain contrastive. ``train.co_teaching`` trains two heads, each on the other's
division (NCR co-divide).
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
from pairsift.models.pairdata import PairEmbeddings
from pairsift.models.training.epoch_division import (
    DividedPairs,
    NeighbourScores,
    crossfit_scorer,
    divide_with,
    fold_ids,
    neighbour_consistency,
    null_losses,
    translation_trust,
)
from pairsift.models.training.heads import ProjectionHeads
from pairsift.models.training.recipes import Batch, TrainingRecipe, training_recipe

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
    img, txt = heads.embed_pairs(val.image, val.text)
    return recall_at_k(img.numpy(), txt.numpy())["rsum"]


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
    # fused: one kernel for all parameters (a step of these small heads costs 0.11 ms, not 0.26)
    opt = torch.optim.AdamW(heads.parameters(), lr=t.lr, weight_decay=t.weight_decay, fused=True)
    return _Net(heads, opt, torch.from_numpy(np.asarray(rows, dtype=np.int64)))


def _use_folds(recipe: TrainingRecipe, cfg: PairsiftConfig, n: int) -> int:
    """Fold count for cross-fitted division: only for a recipe that cross-fits, and only on
    sets small enough (``crossfit_max_pairs``) for the heads to memorise them in the warm-up."""
    t = cfg.train
    small = n <= t.crossfit_max_pairs
    return t.division_folds if recipe.crossfits and t.division_folds >= 2 and small else 0


@dataclass
class _Run:
    """Everything one training run holds across epochs."""

    recipe: TrainingRecipe
    data: PairEmbeddings
    cfg: PairsiftConfig
    nets: list[_Net]
    fold_nets: list[_Net]
    folds: np.ndarray | None
    memories: list[UncertaintyMemory | None]
    neighbours: NeighbourScores | None
    tensors: tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]
    weights: torch.Tensor | None
    gen: torch.Generator


def train(
    data: PairEmbeddings,
    cfg: PairsiftConfig,
    val: PairEmbeddings | None = None,
    identity_init: bool = False,
    progress: Callable[[dict], None] | None = None,
    folds: np.ndarray | None = None,
    weights: np.ndarray | None = None,
    neighbours: NeighbourScores | None = None,
    divide_last: bool = True,
) -> TrainResult:
    """Train projection heads with the recipe ``cfg.train.loss`` (see module doc).

    With ``train.division_folds`` = k ≥ 2 (a cross-fitting recipe), k extra fold heads train
    beside the main heads, each on all pairs outside its fold, and every division scores a
    pair with the heads that never saw it (:func:`crossfit_scores`). ``folds`` fixes each
    row's fold (the pipeline derives it from the pair key so its score pass can use the same
    heads); by default it is drawn from the seed. ``weights`` (one per pair, ≥ 0) weigh each
    pair's term in the plain losses: the final model weighs the kept pairs by their clean
    posterior (``train.final_weight_power``). With ``val``, the heads of the best validation
    rSum are kept (early stopping after ``train.patience`` stale epochs). ``neighbours``: the
    pairs' consistency, already searched (the pipeline's fit); by default it is searched here.
    ``divide_last`` False skips dividing the pairs with the finished heads (``division`` is
    then the last epoch's): the pipeline divides every pair in its score pass instead.
    """
    run = _start(data, cfg, identity_init, folds, weights, neighbours)
    t = run.cfg.train
    history: list[dict] = []
    best_rsum, best_state, stale = -np.inf, None, 0
    division: Division | None = None
    for epoch in range(t.epochs):
        entry, epoch_division = _run_epoch(run, epoch)
        division = epoch_division or division
        run.nets[0].heads.eval()
        if val is not None:
            entry["val_rsum"] = rsum = _rsum(run.nets[0].heads, val)
            if rsum > best_rsum:
                best_rsum, stale = rsum, 0
                best_state = copy.deepcopy(run.nets[0].heads.state_dict())
            else:
                stale += 1
        history.append(entry)
        if progress is not None:
            progress(dict(entry))
        if val is not None and stale >= t.patience and epoch >= t.warmup_epochs:
            break
    heads = run.nets[0].heads
    if best_state is not None:
        heads.load_state_dict(best_state)
    heads.eval()
    if run.recipe.divides and divide_last:
        division = _epoch_divisions(run, t.epochs, run.nets[:1], run.memories[:1])[0].division
    return TrainResult(
        heads=heads, history=history, memory=run.memories[0], division=division,
        fold_heads=[net.heads for net in run.fold_nets],
        folds=run.folds if run.fold_nets else None,
    )


def _start(
    data: PairEmbeddings, cfg: PairsiftConfig, identity_init: bool,
    folds: np.ndarray | None, weights: np.ndarray | None,
    neighbours: NeighbourScores | None = None,
) -> _Run:
    """Check the inputs, sample down to ``limits.max_fit_pairs``, build the nets."""
    recipe = training_recipe(cfg.train.loss)
    data, folds, weights = _checked_inputs(data, cfg, recipe, folds, weights)
    n = len(data)
    torch.manual_seed(cfg.seed)
    k = _use_folds(recipe, cfg, n)
    folds = _fold_of_rows(folds, n, k, cfg.seed)
    centres = input_centres(data, cfg.train, identity_init)
    nets = [_new_net(data, cfg, identity_init, np.arange(n), centres)
            for _ in range(2 if cfg.train.co_teaching else 1)]
    fold_nets = [
        _new_net(data, cfg, identity_init, np.flatnonzero(folds != f), centres) for f in range(k)
    ]
    dcfg = cfg.division
    remembers = dcfg.self_correction and recipe.self_corrects
    memories = [
        UncertaintyMemory(n, dcfg.memory_window, dcfg.fluctuation_threshold) if remembers else None
        for _ in range(1 if k else len(nets))
    ]
    tensors = (_as_tensor(data.image), _as_tensor(data.text),
               {key: _as_tensor(v) for key, v in sorted(data.text_tgt.items())})
    # fixed over the epochs: it reads the tower embeddings, not the heads
    if not recipe.uses_consistency:
        neighbours = None
    elif neighbours is None or len(neighbours.observed) != len(data):  # none, or sampled down
        neighbours = neighbour_consistency(data, cfg, cfg.seed)
    return _Run(recipe, data, cfg, nets, fold_nets, folds, memories, neighbours,
                tensors, None if weights is None else _as_tensor(weights),
                torch.Generator().manual_seed(cfg.seed))


def _fold_of_rows(folds: np.ndarray | None, n: int, k: int, seed: int) -> np.ndarray | None:
    """Each row's cross-fitting fold (given, or drawn from the seed); None without folds."""
    if not k:
        return None
    folds = fold_ids(n, k, seed) if folds is None else np.asarray(folds, dtype=np.int64)
    if folds.min() < 0 or folds.max() >= k:
        raise ValueError(f"fold ids must lie in [0, {k})")
    return folds


def _as_tensor(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(x, dtype=np.float32))


def _checked_inputs(
    data: PairEmbeddings, cfg: PairsiftConfig, recipe: TrainingRecipe,
    folds: np.ndarray | None, weights: np.ndarray | None,
) -> tuple[PairEmbeddings, np.ndarray | None, np.ndarray | None]:
    """Refuse unusable inputs; above ``limits.max_fit_pairs``, a seeded sample of the pairs."""
    if len(data) < 2:
        raise ValueError("training needs at least 2 pairs")
    data.check_finite()
    weights = _check_weights(weights, len(data), recipe)
    if folds is not None and len(folds) != len(data):
        raise ValueError(f"folds has {len(folds)} entries for {len(data)} pairs")
    cap = cfg.limits.max_fit_pairs
    if len(data) > cap:
        rows = np.sort(np.random.default_rng(cfg.seed).choice(len(data), cap, False))
        data = data.subset(rows)
        folds = None if folds is None else np.asarray(folds)[rows]
        weights = None if weights is None else weights[rows]
    return data, folds, weights


def _run_epoch(run: _Run, epoch: int) -> tuple[dict, Division | None]:
    """Divide (a dividing recipe past its warm-up), then one pass of every net."""
    start = time.perf_counter()
    entry: dict = {"epoch": epoch, "method": run.recipe.name}
    divisions: list[dict[str, torch.Tensor] | None] = [None] * len(run.nets)
    division = None
    if run.recipe.divides and epoch >= run.cfg.train.warmup_epochs:
        per_net = _epoch_divisions(run, epoch, run.nets, run.memories)
        for i, divided in enumerate(per_net):
            div, mixture = divided.division, divided.mixture
            trust = None
            if run.recipe.uses_translation_trust and run.cfg.train.translation_trust:
                trust = translation_trust(divided.scores, run.cfg)
            tensors = _division_tensors(div, trust)
            if run.fold_nets:  # one cross-fitted division serves every net
                divisions = [tensors] * len(run.nets)
            else:  # co-divide: each net trains on the other's division
                divisions[(i + 1) % len(run.nets)] = tensors
            if i == 0:
                division = div
                entry.update({f"n_{key}": v for key, v in div.counts().items()})
                if mixture is not None:
                    entry["noise_ratio"] = mixture.noise_ratio
    entry["train_loss"] = _train_epoch(run, divisions, epoch)
    entry["seconds"] = time.perf_counter() - start
    return entry, division


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


def _check_weights(
    weights: np.ndarray | None, n: int, recipe: TrainingRecipe
) -> np.ndarray | None:
    if weights is None:
        return None
    if not recipe.accepts_weights:
        raise ValueError(
            f"per-pair weights apply to the plain losses, not train.loss {recipe.name!r}"
        )
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n,):
        raise ValueError(f"weights has shape {w.shape} for {n} pairs")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or not np.any(w > 0):
        raise ValueError("weights must be finite, non-negative and not all zero")
    return w


def _epoch_divisions(
    run: _Run, epoch: int, nets: list[_Net], memories: list[UncertaintyMemory | None]
) -> list[DividedPairs]:
    """This epoch's division per net: one cross-fitted division, or one per net (co-divide)."""
    seed = run.cfg.seed + epoch
    method = run.recipe.division_method
    if run.fold_nets:
        assert run.folds is not None
        for net in run.fold_nets:
            net.heads.eval()
        score = crossfit_scorer(
            [net.heads for net in run.fold_nets], run.folds, run.data, run.cfg, seed
        )
        scores = score(run.data)
        null = null_losses(score, run.data, run.cfg, seed, method)
        divided = divide_with(scores, run.cfg, memories[0], method, null, run.neighbours)
        return [_refined(run.recipe, divided)]
    out = []
    for net, memory in zip(nets, memories, strict=True):
        net.heads.eval()
        divided = run.recipe.divide(net.heads, run.data, run.cfg, seed, memory, run.neighbours)
        out.append(_refined(run.recipe, divided))
    return out


def _refined(recipe: TrainingRecipe, divided: DividedPairs) -> DividedPairs:
    return dataclasses.replace(
        divided, division=recipe.refine_division(divided.division, divided.scores)
    )


def _train_epoch(
    run: _Run, divisions: list[dict[str, torch.Tensor] | None], epoch: int
) -> float:
    """One pass of every net over its rows; returns the first net's mean batch loss."""
    img_all, txt_all, tgt_all = run.tensors
    batch_size = run.cfg.train.batch_size
    total, batches = 0.0, 0
    fold_division = divisions[0]
    for i, net in enumerate([*run.nets, *run.fold_nets]):
        d = divisions[i] if i < len(run.nets) else fold_division
        # co-teaching: the other net, whose predictions NCR's unlabelled targets average in
        peer = run.nets[1 - i].heads if len(run.nets) == 2 and i < 2 else None
        net.heads.train()
        order = net.rows[torch.randperm(net.rows.numel(), generator=run.gen)]
        for s in range(0, order.numel(), batch_size):
            idx = order[s : s + batch_size]
            if idx.numel() < 2:
                continue
            batch = Batch(
                img_all[idx],
                txt_all[idx],
                {key: v[idx] for key, v in tgt_all.items()},
                None if d is None else {key: v[idx] if v.ndim else v for key, v in d.items()},
                None if run.weights is None else run.weights[idx],
                peer,
            )
            loss = run.recipe.batch_loss(net.heads, batch, run.cfg, epoch)
            net.opt.zero_grad()
            loss.backward()
            net.opt.step()
            if i == 0:
                total += float(loss.detach())
                batches += 1
    return total / max(batches, 1)
