"""Noise-robust training on synthetic embeddings with known noise: prints measured figures.

Pairs come from ``pairsift.models.synthetic`` (latent concepts seen through fixed random
linear "towers", NCR-style per-caption shuffle at the requested rates). For each rate it trains
every recipe on the same noisy pairs and reports noisy-pair detection ROC-AUC on the training
pairs, kept-set precision/recall where a method divides, the estimated noise ratio, and
retrieval rSum on held-out clean pairs. Baselines: all pairs (plain contrastive), a CLIP-score
filter (keep the top share by the all-pairs model's similarity, retrain), NCR, DECL, RCL, and
the oracle (contrastive on the truly clean pairs only).

Run: python -m pairsift.benchmarks.synthetic_noise [--n 4000] [--noise 0.2 0.5 0.8]
     [--partial 0.3] [--tower-noise 0.5]
With ``--partial``, pairsift's rows also report how many partial / complete noisy pairs the
mixture's ``noise_kind`` names correctly.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np
import torch

from pairsift.models.config import PairsiftConfig
from pairsift.models.metrics import detection_auc, kept_precision_recall, recall_at_k
from pairsift.models.pairdata import PairEmbeddings
from pairsift.models.synthetic import make_pairs
from pairsift.models.training.epoch_division import divide_pairs
from pairsift.models.training.heads import ProjectionHeads
from pairsift.models.training.trainer import train


def _config(loss: str, epochs: int, seed: int) -> PairsiftConfig:
    cfg = PairsiftConfig(seed=seed)
    cfg.train.loss = loss
    cfg.train.epochs = epochs
    cfg.train.warmup_epochs = 2
    cfg.train.head_dim = 32
    cfg.train.batch_size = 128
    return cfg


def _rsum(heads: ProjectionHeads, data: PairEmbeddings) -> float:
    with torch.no_grad():
        img = heads.image(torch.from_numpy(data.image)).numpy()
        txt = heads.text(torch.from_numpy(data.text)).numpy()
    return recall_at_k(img, txt)["rsum"]


def run_rate(
    noise: float, n: int, epochs: int, seed: int, partial: float = 0.0, tower_noise: float = 0.5
) -> list[dict[str, Any]]:
    """Why one piece: one noise rate's script: data, every method, figures.
    """
    pairs = make_pairs(n, noise, seed=seed, partial=partial, tower_noise=tower_noise)
    val = make_pairs(500, 0.0, seed=seed + 1000, tower_noise=tower_noise)
    test = make_pairs(1000, 0.0, seed=seed + 2000, tower_noise=tower_noise)
    rows: list[dict[str, Any]] = []

    def record(name: str, cfg: PairsiftConfig, data: PairEmbeddings, kept=None, score=None) -> Any:
        start = time.perf_counter()
        result = train(data, cfg, val=val.data)
        seconds = time.perf_counter() - start
        div, mixture, scores = divide_pairs(result.heads, pairs.data, cfg, seed)
        if score is not None:  # a filter: its own score decides
            noise_score = score
        elif result.division is not None:
            noise_score, kept = 1.0 - result.division.p_clean, result.division.kept
        else:
            noise_score = scores["loss"]  # the trained model's own per-pair loss
        row = {
            "noise": noise,
            "method": name,
            "auc": detection_auc(pairs.is_noisy, noise_score),
            "rsum": _rsum(result.heads, test.data),
            "noise_ratio_est": None if mixture is None else mixture.noise_ratio,
            "seconds": seconds,
        }
        if kept is not None:
            pr = kept_precision_recall(kept, pairs.is_noisy)
            row.update(kept_precision=pr["precision"], kept_recall=pr["recall"])
        if partial > 0 and mixture is not None and cfg.train.loss == "pairsift":
            kind = mixture.noise_kind(scores["loss"])
            for name_ in ("partial", "complete"):
                mask = pairs.noise_kind == name_
                row[f"{name_}_kind_acc"] = float(np.mean(kind[mask] == name_))
        rows.append(row)
        print(
            json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}),
            flush=True,
        )
        return result, scores

    everything, scores = record(
        "all (contrastive)", _config("contrastive", epochs, seed), pairs.data
    )
    keep = np.zeros(n, dtype=bool)
    keep[np.argsort(-scores["similarity"], kind="stable")[: int(round((1 - noise) * n))]] = True
    record(
        "clip-score filter",
        _config("contrastive", epochs, seed),
        pairs.data.subset(np.flatnonzero(keep)),
        kept=keep,
        score=-scores["similarity"],
    )
    for name in ("ncr", "decl", "rcl", "pairsift"):
        record(name, _config(name, epochs, seed), pairs.data)
    record(
        "oracle (clean only)",
        _config("contrastive", epochs, seed),
        pairs.data.subset(np.flatnonzero(~pairs.is_noisy)),
        kept=~pairs.is_noisy,
        score=pairs.is_noisy.astype(float),
    )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--noise", type=float, nargs="+", default=[0.2, 0.5, 0.8])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--partial", type=float, default=0.0, help="share of noise that is partial")
    parser.add_argument("--tower-noise", type=float, default=0.5)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = [
        row
        for rate in args.noise
        for row in run_rate(rate, args.n, args.epochs, args.seed, args.partial, args.tower_noise)
    ]
    print()
    print("| noise | method | AUC | rSum | kept prec | kept rec | est. noise | s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:

        def fmt(key: str, digits: int = 3, row: dict[str, Any] = r) -> str:
            v = row.get(key)
            return "-" if v is None else f"{v:.{digits}f}"

        print(
            f"| {r['noise']:.0%} | {r['method']} | {fmt('auc')} | {fmt('rsum', 1)} | "
            f"{fmt('kept_precision')} | {fmt('kept_recall')} | {fmt('noise_ratio_est')} | "
            f"{fmt('seconds', 1)} |"
        )


if __name__ == "__main__":
    main()
