"""`pairsift bench score`: what each part of the score pass costs per pair.

The score pass computes, per shard, the bank scores (loss, uncertainty, ...: heads plus K
negatives), the same for the caption-swapped null, and the neighbour consistency of the pairs
(once per pair, in the fit, which the score pass reuses; an inverted-file search of
``probes`` lists, or an exact one over every anchor). This times each on random vectors
of the towers' width, in one process and one run, so the ratios say what the consistency adds
on this machine; the absolute rates depend on it.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np


def _best_seconds(work: Callable[[], Any], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - start)
    return best


def measure(pairs: int, anchors: int, dim: int, k: int, negatives: int, rounds: int,
            seed: int = 0, probes: int = 8) -> dict[str, Any]:
    """Pairs per second of the bank scores and of the neighbour consistency, searched exactly
    and by the IVF index with ``probes`` lists (index build excluded: once per worker)."""
    from pairsift.models.config import TrainConfig
    from pairsift.models.noise.consistency import NeighbourIndex
    from pairsift.models.pairdata import PairEmbeddings
    from pairsift.models.training.heads import ProjectionHeads
    from pairsift.models.training.scoring import build_scoring_state
    from pairsift.transforms.score import score_in_chunks

    rng = np.random.default_rng(seed)
    image = rng.normal(size=(pairs, dim)).astype(np.float32)
    text = rng.normal(size=(pairs, dim)).astype(np.float32)
    anchor_image = rng.normal(size=(anchors, dim)).astype(np.float32)
    anchor_text = rng.normal(size=(anchors, dim)).astype(np.float32)
    heads = ProjectionHeads(dim, dim, dim, identity=True).eval()
    cfg = TrainConfig(num_negatives=negatives)
    state = build_scoring_state(heads, PairEmbeddings(image=anchor_image, text=anchor_text), cfg, seed)
    keys = [str(i) for i in range(anchors)]
    exact = NeighbourIndex.build(anchor_image, anchor_text, keys, k)
    ivf = NeighbourIndex.build(anchor_image, anchor_text, keys, k, probes=probes, seed=seed)
    for index in (exact, ivf):
        index.score(image[:8], text[:8])  # builds the faiss index
    matrices = {"image_emb": image, "text_emb": text}
    bank = _best_seconds(lambda: score_in_chunks(state, matrices, []), rounds)
    exact_s = _best_seconds(lambda: exact.score(image, text), rounds)
    ivf_s = _best_seconds(lambda: ivf.score(image, text), rounds)
    return {
        "pairs": pairs, "anchors": anchors, "dim": dim, "neighbours": k, "negatives": negatives,
        "probes": ivf.probes,
        "bank_scores_pairs_per_s": round(pairs / bank, 1),
        "consistency_pairs_per_s": round(pairs / ivf_s, 1),
        "exact_consistency_pairs_per_s": round(pairs / exact_s, 1),
        "consistency_over_bank_time": round(ivf_s / bank, 2),
    }


def bench_command(args: argparse.Namespace) -> int:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    rows = [
        measure(args.pairs, anchors, args.dim, args.neighbours, args.negatives, args.rounds,
                probes=args.probes)
        for anchors in args.anchors
    ]
    print(f"# pairsift bench score (torch threads {torch.get_num_threads()}; best of {args.rounds})")
    print("| anchors | bank scores pairs/s | consistency pairs/s (IVF, probes) | exact search pairs/s "
          "| IVF consistency time / bank time |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['anchors']} | {r['bank_scores_pairs_per_s']} | {r['consistency_pairs_per_s']} "
              f"({r['probes']}) | {r['exact_consistency_pairs_per_s']} | {r['consistency_over_bank_time']} |")
    if args.json:
        print(json.dumps(rows))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "score", help="score pass cost per pair: bank scores vs neighbour consistency"
    )
    parser.add_argument("--pairs", type=int, default=8192, help="rows to score")
    parser.add_argument("--anchors", type=int, nargs="+", default=[2000, 20000],
                        help="anchor counts to time (consistency.max_anchors)")
    parser.add_argument("--dim", type=int, default=512, help="tower width")
    parser.add_argument("--neighbours", type=int, default=30)
    parser.add_argument("--probes", type=int, default=8, help="IVF lists a query (consistency.probes)")
    parser.add_argument("--negatives", type=int, default=64, help="bank size (train.num_negatives)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    parser.add_argument("--json", action="store_true", help="also print the rows as JSON")
    parser.set_defaults(func=bench_command)
