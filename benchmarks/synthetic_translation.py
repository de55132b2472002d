"""Cross-lingual noise on synthetic embeddings: prints measured figures.

Pairs from ``pairsift.models.synthetic`` with one target language: a share of the English
captions is shuffled (correspondence noise) and, independently, a share of the target-language
captions belongs to another pair (bad translations; the English source stays right). Reports
retrieval rSum on held-out clean pairs for the English view and the target-language view,
noisy-pair detection AUC (1 − p_clean) and bad-translation detection AUC
(−translation_consistency), for plain contrastive training and for pairsift with and without
its cross-lingual parts (dual view + mutual learning).

Run: python -m pairsift.benchmarks.synthetic_translation [--n 4000] [--noise 0.4]
     [--translation-noise 0.3]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from pairsift.benchmarks.synthetic_noise import _config
from pairsift.models.metrics import detection_auc, recall_at_k
from pairsift.models.pairdata import PairEmbeddings
from pairsift.models.synthetic import make_pairs
from pairsift.models.training.epoch_division import divide_pairs
from pairsift.models.training.heads import ProjectionHeads
from pairsift.models.training.trainer import train

LANG = "pt"


def _rsums(heads: ProjectionHeads, data: PairEmbeddings) -> tuple[float, float]:
    with torch.no_grad():
        img = heads.image(torch.from_numpy(data.image)).numpy()
        en = heads.text(torch.from_numpy(data.text)).numpy()
        tgt = heads.text(torch.from_numpy(data.text_tgt[LANG]), LANG).numpy()
    return recall_at_k(img, en)["rsum"], recall_at_k(img, tgt)["rsum"]


def main(argv: list[str] | None = None) -> None:
    """Why one piece: the script: data, training, division, figures.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--noise", type=float, default=0.4)
    parser.add_argument("--translation-noise", type=float, default=0.3)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    pairs = make_pairs(
        args.n,
        args.noise,
        seed=args.seed,
        target_langs=(LANG,),
        translation_noise=args.translation_noise,
    )
    val = make_pairs(500, 0.0, seed=args.seed + 1000, target_langs=(LANG,))
    test = make_pairs(1000, 0.0, seed=args.seed + 2000, target_langs=(LANG,))
    variants = {
        "contrastive (all pairs)": ("contrastive", {}),
        "pairsift": ("pairsift", {}),
        "pairsift, no dual view / mutual learning": (
            "pairsift",
            {"division.dual_view": False, "train.mutual_learning": False},
        ),
        "pairsift, no translation trust": ("pairsift", {"train.translation_trust": False}),
        "pairsift, none of the three": (
            "pairsift",
            {
                "division.dual_view": False,
                "train.mutual_learning": False,
                "train.translation_trust": False,
            },
        ),
    }
    rows = []
    for name, (loss, switches) in variants.items():
        cfg = _config(loss, args.epochs, args.seed)
        for key, value in switches.items():
            section, field = key.split(".")
            setattr(getattr(cfg, section), field, value)
        start = time.perf_counter()
        result = train(pairs.data, cfg, val=val.data)
        seconds = time.perf_counter() - start
        div, _, scores = divide_pairs(result.heads, pairs.data, cfg, args.seed)
        en, tgt = _rsums(result.heads, test.data)
        row = {
            "method": name,
            "rsum_en": en,
            "rsum_tgt": tgt,
            "auc_noisy": detection_auc(pairs.is_noisy, 1.0 - div.p_clean),
            "auc_bad_translation": detection_auc(
                pairs.bad_translation, -scores["translation_consistency"]
            ),
            "seconds": seconds,
        }
        rows.append(row)
        print(
            json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}),
            flush=True,
        )
    print()
    print("| method | rSum EN | rSum target | AUC noisy | AUC bad translation | s |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['method']} | {r['rsum_en']:.1f} | {r['rsum_tgt']:.1f} | {r['auc_noisy']:.3f}"
            f" | {r['auc_bad_translation']:.3f} | {r['seconds']:.1f} |"
        )


if __name__ == "__main__":
    main()
