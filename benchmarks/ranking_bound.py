"""`pairsift bench bound`: how good a noise ranking must be before filtering nears the oracle.

The quality table says where pairsift's OUT/model lands against the oracle; this says what
bounds it. For one noise setting and each seed it runs pairsift's division once, then
retrains the final contrastive model on the same number of pairs picked by different
rankings. Every row uses the same retrain seeds, so rows differ only in which pairs they keep:

- ``pairsift OUT/model``: pairsift's kept pairs weighted by p_clean^power (the quality row);
- ``pairsift ranking``: the same number of pairs with the highest p_clean, unweighted;
- ``reference``: the small-loss ranking of contrastive heads trained on the *clean* pairs
  outside each fold. No method has such heads; they show what the loss of well-trained heads
  can tell apart on these towers and this much data;
- ``pairsift ranking + a·truth``: rank(1 − p_clean)/n + a·is_noisy. The detection AUC rises
  with ``a``, so these rows trace the retrained model's rSum against the ranking's AUC.

rSum is the mean over the retrain seeds; the ratio divides it by the oracle's mean (clean pairs
only) over the same seeds.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import rankdata

from pairsift.benchmarks.quality_runs import (
    Setting,
    SettingData,
    contrastive_config,
    make_setting_data,
    pair_scores,
    retrieval,
    setting_shards,
    shipped_division,
    with_changes,
)
from pairsift.models.config import PairsiftConfig
from pairsift.models.metrics import detection_auc, kept_precision_recall
from pairsift.models.pairdata import PairEmbeddings
from pairsift.models.training.epoch_division import fold_ids
from pairsift.pipeline.final_model import posterior_weights

ORACLE = "oracle: clean pairs only"
FILTER = "pairsift OUT/model (kept, weighted)"
RANKING = "pairsift ranking"
REFERENCE = "reference: loss of heads trained on the clean pairs (out of fold)"


@dataclass
class BoundRow:
    """One ranking's figures for one seed."""

    ranking: str
    seed: int
    auc: float | None
    kept: int
    precision: float
    recall: float
    rsum: float
    ratio: float


def retrained_rsum(data: SettingData, rows: np.ndarray, cfg: PairsiftConfig,
                   retrain_seeds: list[int], weights: np.ndarray | None = None) -> float:
    """Mean test rSum of contrastive heads retrained on ``rows``, one run per retrain seed."""
    from pairsift.models.training.trainer import train

    run_cfg = contrastive_config(cfg)
    scores = []
    for seed in retrain_seeds:
        run_cfg.seed = seed
        heads = train(data.train.subset(rows), run_cfg, weights=weights).heads
        scores.append(retrieval(heads, data.test)["rsum"])
    return float(np.mean(scores))


def reference_scores(train_data: PairEmbeddings, is_noisy: np.ndarray, cfg: PairsiftConfig,
                     folds: int, seed: int) -> np.ndarray:
    """Each pair's bank loss under contrastive heads trained on the clean pairs of the other
    folds: a ranking that has seen the truth, yet scores no pair its heads trained on."""
    from pairsift.models.training.trainer import train

    if folds < 2:
        raise ValueError(f"the reference ranking needs at least 2 folds, got {folds}")
    fold = fold_ids(len(is_noisy), folds, seed)
    run_cfg = contrastive_config(cfg)
    run_cfg.seed = seed
    loss = np.zeros(len(is_noisy))
    for f in range(folds):
        rows = np.flatnonzero(~is_noisy & (fold != f))
        heads = train(train_data.subset(rows), run_cfg).heads
        held_out = fold == f
        loss[held_out] = pair_scores(heads, train_data, cfg)["loss"][held_out]
    return loss


def mixed_scores(noise_score: np.ndarray, is_noisy: np.ndarray, truth_weight: float) -> np.ndarray:
    """rank(noise_score)/n + a·is_noisy: a = 0 keeps the ranking, a ≥ 1 is the truth itself."""
    ranks = rankdata(noise_score) / len(noise_score)
    return ranks + truth_weight * np.asarray(is_noisy, dtype=np.float64)


def top_rows(noise_score: np.ndarray, count: int) -> np.ndarray:
    """The ``count`` rows with the lowest noise score, in row order (ties: lower row first)."""
    return np.sort(np.argsort(noise_score, kind="stable")[:count])


def bound_rows(data: SettingData, setting: Setting, base: PairsiftConfig, retrain_seeds: int,
               mixes: list[float], folds: int) -> list[BoundRow]:
    """Every ranking's row for one setting (one seed)."""

    cfg = with_changes(base, {})
    cfg.seed = setting.seed
    noisy = data.is_noisy
    seeds = [setting.seed * 1000 + s for s in range(retrain_seeds)]
    oracle = retrained_rsum(data, np.flatnonzero(~noisy), cfg, seeds)
    # the division `pairsift run` ships, as `run_job(..., "pairsift_filter")` measures it
    division = shipped_division(setting_shards(data.train), cfg).labels
    kept = np.flatnonzero(division.kept)
    count = max(len(kept), 2)
    noise_score = 1.0 - division.p_clean

    def row(name: str, rows: np.ndarray, score: np.ndarray | None,
            weights: np.ndarray | None = None) -> BoundRow:
        mask = np.zeros(len(noisy), dtype=bool)
        mask[rows] = True
        pr = kept_precision_recall(mask, noisy)
        rsum = oracle if name == ORACLE else retrained_rsum(data, rows, cfg, seeds, weights)
        auc = None if score is None else detection_auc(noisy, score)
        return BoundRow(name, setting.seed, auc, len(rows), pr["precision"], pr["recall"], rsum,
                        rsum / oracle if oracle > 0 else float("nan"))

    weights = posterior_weights(division.p_clean[kept], cfg.train.final_weight_power)
    reference = reference_scores(data.train, noisy, cfg, folds, setting.seed)
    rows = [
        row(ORACLE, np.flatnonzero(~noisy), None),
        row(FILTER, kept, noise_score, weights),
        row(RANKING, top_rows(noise_score, count), noise_score),
        row(REFERENCE, top_rows(reference, count), reference),
    ]
    for a in mixes:
        mixed = mixed_scores(noise_score, noisy, a)
        rows.append(row(f"{RANKING} + {a:g}·truth", top_rows(mixed, count), mixed))
    return rows


def _mean_std(values: list[float | None], digits: int) -> str:
    present = [v for v in values if v is not None]
    if not present:
        return "–"
    return f"{np.mean(present):.{digits}f} ± {np.std(present):.{digits}f}"


def render(rows: list[BoundRow]) -> str:
    """Markdown table, mean ± std over seeds, rankings in first-seen order."""
    names = list(dict.fromkeys(r.ranking for r in rows))
    lines = [
        "| ranking | detection AUC | pairs kept | kept precision | kept recall | rSum | "
        "rSum / oracle |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in names:
        group = [r for r in rows if r.ranking == name]
        lines.append(
            f"| {name} | {_mean_std([r.auc for r in group], 3)} | "
            f"{_mean_std([float(r.kept) for r in group], 0)} | "
            f"{_mean_std([r.precision for r in group], 3)} | "
            f"{_mean_std([r.recall for r in group], 3)} | "
            f"{_mean_std([r.rsum for r in group], 1)} | "
            f"{_mean_std([100 * r.ratio for r in group], 1)} % |"
        )
    return "\n".join(lines)


def bench_command(args: argparse.Namespace) -> int:
    """Why one piece: the command's script: settings, rows per seed, table, files.
    """
    import torch

    from pairsift.benchmarks.embedding_cache import embed_source
    from pairsift.benchmarks.quality import (
        DEFAULT_IMAGE_SIZE,
        base_config,
        bench_source,
        code_version,
        command_line,
    )

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    version = code_version()
    mixes = [float(a) for a in args.mix.split(",") if a.strip()] if args.mix else []
    if args.noise_mode not in ("caption", "image"):
        raise ValueError(f"--noise-mode must be caption or image, not {args.noise_mode!r}")
    if not 0.0 < args.noise < 1.0:
        raise ValueError(f"--noise must lie in (0, 1), got {args.noise}")
    source = bench_source(args.dataset, args)
    image_size = args.image_size or DEFAULT_IMAGE_SIZE.get(args.dataset)
    emb = embed_source(source, args.dataset, args.encoder, image_size, [],
                       cache_dir=args.cache_dir, device=args.device)
    base = base_config(args)
    rows: list[BoundRow] = []
    for seed in range(args.seeds):
        setting = Setting(args.noise_mode, args.noise, seed)
        seed_rows = bound_rows(make_setting_data(emb, setting), setting, base,
                               args.retrain_seeds, mixes, args.folds)
        for r in seed_rows:
            auc = "–" if r.auc is None else f"{r.auc:.3f}"
            print(f"[bound] seed {seed} {r.ranking}: AUC {auc} precision {r.precision:.3f} "
                  f"rSum {r.rsum:.1f} ({100 * r.ratio:.1f} % of the oracle)", flush=True)
        rows.extend(seed_rows)
    wall = time.perf_counter() - started
    label = f"{args.dataset}-{args.noise_mode}-{round(args.noise * 100)}"
    if args.encoder != "default":  # beside the default towers' table, not over it
        label += "-" + re.sub(r"[^a-z0-9]+", "-", args.encoder.lower()).strip("-")
    markdown = "\n".join([
        f"# Ranking bound: {args.dataset}, {args.noise_mode} shuffle, "
        f"{round(args.noise * 100)}% noise",
        "",
        f"Command: `{command_line('bound')}`",
        "",
        f"- code: {version}",
        f"- seeds: 0..{args.seeds - 1} (noise plan and division); {args.retrain_seeds} retrain "
        f"seeds per row, the same for every row; reference folds: {args.folds}",
        f"- encoder: `{args.encoder}`, image size {image_size or 'native'}; wall time "
        f"{wall:.0f}s on {os.cpu_count()} CPU core(s)",
        "- every row but the oracle keeps as many pairs as pairsift kept; rows are defined "
        "in benchmarks/ranking_bound.py",
        "",
        render(rows),
    ])
    print(markdown, flush=True)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, f"bound-{label}.md"), "w", encoding="utf-8") as handle:
            handle.write(markdown + "\n")
        with open(os.path.join(args.out, f"bound-{label}.json"), "w", encoding="utf-8") as handle:
            json.dump({"version": version, "wall_seconds": wall,
                       "rows": [asdict(r) for r in rows]}, handle, indent=1)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    from pairsift.benchmarks.embedding_cache import DEFAULT_CACHE_DIR

    parser = subparsers.add_parser(
        "bound", help="retrained rSum against the noise ranking's AUC: what bounds filtering"
    )
    parser.add_argument("--dataset", default="synth", help="synth | tuxpaint | fashion-mnist")
    parser.add_argument("--data-dir", default=None, help="shards of the dataset (else built)")
    parser.add_argument("--pairs", type=int, default=None, help="dataset size (synth: 3000)")
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--noise", type=float, default=0.5, help="noise rate")
    parser.add_argument("--noise-mode", default="caption", help="caption | image")
    parser.add_argument("--seeds", type=int, default=3, help="noise plans 0..K-1")
    parser.add_argument("--retrain-seeds", type=int, default=6,
                        help="retrains averaged per row (the retrain seed alone moves rSum a lot)")
    parser.add_argument("--mix", default="0.1,0.2,0.3,0.45",
                        help="truth weights a of the mixed rankings, comma-separated")
    parser.add_argument("--folds", type=int, default=4, help="folds of the reference ranking")
    parser.add_argument("--encoder", default="default")
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--warmup-epochs", type=int, default=None)
    parser.add_argument("--device", default="cpu", help="device for embedding")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--cache-dir", default=DEFAULT_CACHE_DIR)
    parser.add_argument("--out", default=os.path.join("benchmarks", "results"),
                        help="where bound-<dataset>-<mode>-<rate>[-<encoder>].md/.json go "
                        "('' for none)")
    parser.set_defaults(func=bench_command)
