"""One benchmark job: a noise setting × a method, on cached clean embeddings.

A setting re-pairs the cached rows with the dataset's noise plan (caption shuffle permutes
caption rows among the noisy train pairs, image shuffle image rows, near-miss noise gives a
pair another caption of its near-miss group); only partially edited captions are embedded,
once per setting (benchmarks/noise_settings.py).
Every method trains projection heads with the models/ trainer under the same base config
and is evaluated on the clean, caption-deduplicated test split.

Detection score per method (higher = more likely noisy):
- division methods (pairsift and its ablations, NCR, GMM): 1 − p_clean of their division;
  DECL: 1 − the pair's share of its row's evidence (its division's ranking);
- CLIP-score filter: −similarity;
- methods that do not divide (all pairs, oracle): the per-pair loss against a fixed
  negative bank under the trained heads (the small-loss criterion).
``loss_auc`` is that small-loss AUC under every method's final heads: it separates "the
heads learned to tell pairs apart" from "the division turned that into a calibrated p_clean".
"""

from __future__ import annotations

import copy
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from pairsift.benchmarks.embedding_cache import CleanEmbeddings
from pairsift.benchmarks.noise_settings import Setting, noisy_text, setting_plan
from pairsift.models.config import PairsiftConfig, TrainConfig
from pairsift.models.metrics import detection_auc, kept_precision_recall, recall_at_k
from pairsift.models.noise.division import divide
from pairsift.models.pairdata import PairEmbeddings
from pairsift.models.recipe import changes_from_default, load_recipe
from pairsift.models.training.heads import ProjectionHeads, load_heads
from pairsift.models.training.retrieval import load_heads_from_model
from pairsift.models.training.scoring import build_scoring_state, score_batch
from pairsift.models.training.trainer import train
from pairsift.pipeline.embedded import (
    EmbeddedLabels,
    EmbeddedShard,
    label_embedded,
    with_shard_languages,
)
from pairsift.pipeline.final_model import run_final_model
from pairsift.pipeline.layout import RunLayout


@dataclass
class RowResult:
    """Figures of one method under one setting and seed (None where not applicable)."""

    method: str
    setting: Setting
    auc: float | None
    precision: float
    recall: float
    est_noise: float | None
    true_noise: float
    recall_at: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    loss_auc: float | None = None  # small-loss AUC under the final heads (diagnostic)
    model_rsum: float | None = None  # pairsift and its ablations: rSum of OUT/model (shipped)

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "mode": self.setting.mode, "rate": self.setting.rate,
                "seed": self.setting.seed, "auc": self.auc, "precision": self.precision,
                "recall": self.recall, "est_noise": self.est_noise,
                "true_noise": self.true_noise, "loss_auc": self.loss_auc,
                "model_rsum": self.model_rsum, **self.recall_at,
                "seconds": self.seconds}


# benchmark method name -> the recipe (models/configs/recipes/) its row runs; the table's
# description is the recipe's own, and so are its config changes
ABLATION_RECIPES: dict[str, str] = {
    "pairsift": "pairsift",
    "-uncertainty": "pairsift-no-uncertainty",
    "+self_correction": "pairsift-with-self-correction",
    "-mixture_agrees": "pairsift-no-mixture-agreement",
    "-crossfit": "pairsift-no-crossfit",
    "-null_model": "pairsift-no-null",
    "-noise_share": "pairsift-no-noise-share",
    "-consistency": "pairsift-no-consistency",
    "+trusted_margin": "pairsift-with-trusted-margin",
    "+refurbish": "pairsift-with-refurbish",
    "+fisher": "pairsift-with-fisher",
    "-dual_view": "pairsift-no-dual-view",
    "-mutual": "pairsift-no-mutual",
}


def _ablation(recipe: str) -> tuple[str, dict[str, dict[str, Any]]]:
    """(description, changes on the base config) of a recipe whose base is pairsift."""
    if recipe == "pairsift":
        return "pairsift (full)", {}
    return load_recipe(recipe).description, changes_from_default(recipe)


ABLATIONS: dict[str, tuple[str, dict[str, dict[str, Any]]]] = {
    name: _ablation(recipe) for name, recipe in ABLATION_RECIPES.items()
}
MULTILINGUAL_ONLY = ("-dual_view", "-mutual")
BASELINES: dict[str, str] = {
    "all": "(a) all pairs, no cleaning",
    "clip_score": "(b) CLIP-score filter, keep 1 − F",
    "gmm": "(c) GMM on per-pair loss (NCR division)",
    "pairsift_filter": "(d) pairsift OUT/model: contrastive on the kept pairs weighted by "
                       f"p_clean^{TrainConfig().final_weight_power:g} "
                       f"(if ≥ {TrainConfig().final_min_pairs})",
    "ncr": "NCR (two nets co-divide by a GMM on their hinge loss, co-rectified soft margin)",
    "decl": "DECL (evidential MSE risk + dynamic hinge, divides by evidence)",
    "oracle": "(e) oracle: clean pairs only",
}
METHOD_ORDER: tuple[str, ...] = (
    "all", "clip_score", "gmm", "pairsift", "pairsift_filter",
    *[m for m in ABLATIONS if m != "pairsift"], "ncr", "decl", "oracle",
)


def method_title(name: str) -> str:
    if name in BASELINES:
        return BASELINES[name]
    return ABLATIONS[name][0] if name == "pairsift" else "(d) " + ABLATIONS[name][0]


def methods_for(langs: list[str], include: list[str] | None = None) -> list[str]:
    names = [m for m in METHOD_ORDER if langs or m not in MULTILINGUAL_ONLY]
    if include:
        unknown = sorted(set(include) - set(METHOD_ORDER))
        if unknown:
            raise ValueError(f"unknown method(s) {unknown}; choose from {list(METHOD_ORDER)}")
        names = [m for m in names if m in include]
    return names


def with_changes(cfg: PairsiftConfig, changes: dict[str, dict[str, Any]]) -> PairsiftConfig:
    out = copy.deepcopy(cfg)
    for section, values in changes.items():
        target = getattr(out, section)
        for key, value in values.items():
            if not hasattr(target, key):
                raise ValueError(f"config has no {section}.{key}")
            setattr(target, key, value)
    return out


@dataclass
class SettingData:
    train: PairEmbeddings
    is_noisy: np.ndarray
    test: PairEmbeddings


def eval_rows(emb: CleanEmbeddings) -> np.ndarray:
    """Clean test items, first of each caption group (so R@1 has one right answer)."""
    assert emb.splits is not None and emb.groups is not None
    rows = np.flatnonzero(emb.splits == "test")
    _, first = np.unique(emb.groups[rows], return_index=True)
    return np.sort(rows[first])


def make_setting_data(emb: CleanEmbeddings, setting: Setting) -> SettingData:
    """Re-pair the cached rows under the setting's noise plan; the test split stays clean."""
    assert emb.splits is not None and emb.groups is not None
    train_rows = np.flatnonzero(emb.splits == "train")
    plan = setting_plan(emb, setting)
    image_rows, text_rows = plan.image_rows()[train_rows], plan.text_rows()[train_rows]
    train_data = PairEmbeddings(
        emb.image[image_rows], noisy_text(emb, setting, plan)[train_rows],
        {lang: v[text_rows] for lang, v in emb.text_tgt.items()},
    )
    test = eval_rows(emb)
    test_data = PairEmbeddings(emb.image[test], emb.text[test],
                               {lang: v[test] for lang, v in emb.text_tgt.items()})
    return SettingData(train_data, plan.noisy[train_rows].copy(), test_data)


def retrieval(heads: ProjectionHeads, test: PairEmbeddings) -> dict[str, float]:
    img, txt = heads.embed_pairs(test.image, test.text)
    return recall_at_k(img.numpy(), txt.numpy())


def pair_scores(heads: ProjectionHeads, data: PairEmbeddings, cfg: PairsiftConfig) -> dict[str, np.ndarray]:
    state = build_scoring_state(heads, data, cfg.train, cfg.seed)
    return score_batch(state, data.image, data.text, data.text_tgt or None)


def _auc(is_noisy: np.ndarray, score: np.ndarray) -> float | None:
    if is_noisy.all() or not is_noisy.any():
        return None
    return detection_auc(is_noisy, score)


def recipe_config(cfg: PairsiftConfig, recipe: str) -> PairsiftConfig:
    """``cfg`` with the changes the named recipe makes to pairsift's method."""
    return with_changes(cfg, _ablation(recipe)[1])


def contrastive_config(cfg: PairsiftConfig, epochs: int | None = None) -> PairsiftConfig:
    """The plain InfoNCE recipe every retrain uses (oracle, filters, OUT/model)."""
    out = recipe_config(cfg, "contrastive")
    if epochs is not None:
        out.train.epochs = epochs
    return out


SHARD_SIZE = 1000  # pairs per embeddings shard of the shipped path (the null swaps within one)


def setting_shards(train: PairEmbeddings, shard_size: int = SHARD_SIZE) -> list[EmbeddedShard]:
    """The train pairs as `pairsift run` would hold them after pass 1: consecutive shards
    of ``shard_size``, keys in row order (a key picks the pair's cross-fitting fold)."""
    keys = train.keys or [f"{i:07d}" for i in range(len(train))]
    shards = []
    for index, start in enumerate(range(0, len(train), shard_size)):
        rows = slice(start, start + shard_size)
        shards.append(EmbeddedShard(
            f"{index:05d}", list(keys[rows]), train.image[rows], train.text[rows],
            {lang: v[rows] for lang, v in train.text_tgt.items()},
            None if train.text_src_ml is None else train.text_src_ml[rows],
        ))
    return shards


@dataclass
class ShippedRow:
    """What `pairsift run` gives for a set of embedded pairs: the labels, the fit heads and
    OUT/model (the final model retrained on the kept pairs, or the fit heads)."""

    labels: EmbeddedLabels
    fit_heads: ProjectionHeads
    final_heads: ProjectionHeads


def shipped_scores(train_pairs: PairEmbeddings, cfg: PairsiftConfig) -> dict[str, np.ndarray]:
    """Each training pair's similarity, loss and uncertainty as `pairsift run`'s score pass
    gives them: from the very heads pairsift divides with (out-of-fold where the fit
    cross-fits), so the CLIP-score and GMM rows rank the same scores pairsift does."""
    shards = setting_shards(train_pairs)
    with tempfile.TemporaryDirectory(prefix="pairsift-bench-") as out:
        labels = label_embedded(shards, with_changes(cfg, {}), out)
    return {name: labels.columns[name] for name in ("similarity", "loss", "uncertainty")}


def shipped_division(shards: list[EmbeddedShard], cfg: PairsiftConfig) -> ShippedRow:
    """Every benchmark row named "pairsift": the stages `pairsift run` executes after pass 1
    (fit, score pass, noise fit, per-shard labelling, final model) on these shards."""
    cfg = with_shard_languages(cfg, shards)  # the final model trains every view too
    with tempfile.TemporaryDirectory(prefix="pairsift-bench-") as out:
        labels = label_embedded(shards, cfg, out)
        layout = RunLayout(out)
        kept = int(np.isin(labels.label, list(cfg.output.keep_labels)).sum())
        run_final_model(cfg, layout, kept)
        return ShippedRow(labels, load_heads(layout.heads), load_heads_from_model(layout.model)[0])


def run_job(
    emb: CleanEmbeddings, setting: Setting, method: str, base: PairsiftConfig,
    threads: int = 1,
) -> RowResult:
    """Train and evaluate ``method`` under ``setting`` (deterministic per seed)."""
    torch.set_num_threads(threads)
    started = time.perf_counter()
    data = make_setting_data(emb, setting)
    cfg = with_changes(base, {})
    cfg.seed = setting.seed
    noisy = data.is_noisy
    true_noise = float(noisy.mean())
    keep_all = np.ones_like(noisy)
    auc: float | None
    est: float | None = None
    model_rsum: float | None = None
    kept = keep_all
    if method in ("all", "oracle"):
        rows = np.flatnonzero(~noisy) if method == "oracle" else np.arange(len(noisy))
        heads = train(data.train.subset(rows), contrastive_config(cfg)).heads
        auc = _auc(noisy, pair_scores(heads, data.train, cfg)["loss"])
        if method == "oracle":
            kept = ~noisy
    elif method in ("clip_score", "gmm"):
        scores = shipped_scores(data.train, cfg)
        if method == "clip_score":
            auc = _auc(noisy, -scores["similarity"])
            fraction = max(1.0 - true_noise, 1.0 / len(noisy))
            division = divide(scores, None, with_changes(
                cfg, {"division": {"method": "clip_score", "keep_fraction": fraction}}).division)
        else:
            division = divide(scores, None, with_changes(cfg, {"division": {"method": "gmm"}}).division)
            auc = _auc(noisy, 1.0 - division.p_clean)
            est = float((division.label == "noisy").mean())
        kept = division.kept
        heads = train(data.train.subset(np.flatnonzero(kept)), contrastive_config(cfg)).heads
    elif method in ("ncr", "decl"):  # each divides by its own rule while it trains
        result = train(data.train, recipe_config(cfg, method))
        heads, division = result.heads, result.division
        assert division is not None
        auc, kept = _auc(noisy, 1.0 - division.p_clean), division.kept
        est = float((division.label == "noisy").mean())
    elif method in ABLATIONS or method == "pairsift_filter":
        run_cfg = with_changes(cfg, ABLATIONS.get(method, ("", {}))[1])
        run_cfg.train.loss = "pairsift"
        shipped = shipped_division(setting_shards(data.train), run_cfg)
        auc, kept = _auc(noisy, 1.0 - shipped.labels.p_clean), shipped.labels.kept
        est = shipped.labels.noise_fit.noise_ratio
        if est is None:
            est = float((~kept).mean())
        heads = shipped.final_heads if method == "pairsift_filter" else shipped.fit_heads
        # what ships is OUT/model: every ablation is judged on it too
        model_rsum = retrieval(shipped.final_heads, data.test)["rsum"]
    else:
        raise ValueError(f"unknown method {method!r}")
    pr = kept_precision_recall(kept, noisy)
    loss_auc = _auc(noisy, pair_scores(heads, data.train, cfg)["loss"])
    return RowResult(method, setting, auc, pr["precision"], pr["recall"], est, true_noise,
                     retrieval(heads, data.test), time.perf_counter() - started, loss_auc,
                     model_rsum)


def run_jobs(
    emb: CleanEmbeddings,
    jobs: list[tuple[Setting, str]],
    base: PairsiftConfig,
    workers: int = 1,
    threads: int = 1,
    progress: Callable[[RowResult, int, int], None] | None = None,
) -> list[RowResult]:
    """Run every job, in worker processes when ``workers > 1``; results in job order."""
    results: list[RowResult | None] = [None] * len(jobs)
    if workers <= 1:
        for i, (setting, method) in enumerate(jobs):
            results[i] = run_job(emb, setting, method, base, threads)
            if progress is not None:
                progress(results[i], i + 1, len(jobs))
        return [r for r in results if r is not None]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        futures = {pool.submit(run_job, emb, s, m, base, threads): i
                   for i, (s, m) in enumerate(jobs)}
        done = 0
        for future in as_completed(futures):
            results[futures[future]] = future.result()
            done += 1
            if progress is not None:
                progress(results[futures[future]], done, len(jobs))
    return [r for r in results if r is not None]
