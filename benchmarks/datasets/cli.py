"""`pairsift data {synth,tuxpaint,fashion-mnist,openclipart}`: build benchmark datasets.

Output is the img2dataset layout the pipeline reads (NNNNN.tar + .parquet + _stats.json),
with ground-truth columns ``is_noisy`` / ``noise_kind`` for the noise that was injected.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from pairsift.pipeline.datasets.common import MissingDatasetError, PairSource
from pairsift.pipeline.datasets.noise import NOISE_MODES

log = logging.getLogger(__name__)
DATASETS: tuple[str, ...] = ("synth", "tuxpaint", "fashion-mnist", "openclipart")


def make_source(name: str, args: argparse.Namespace) -> PairSource:
    """Instantiate the named source from CLI-style options (also used by the benchmark)."""
    pairs = getattr(args, "pairs", None)
    seed = getattr(args, "seed", 0)
    root = getattr(args, "root", None)
    image_size = getattr(args, "image_size", None)
    if name == "synth":
        from pairsift.pipeline.datasets.synth import SynthSource

        return SynthSource(pairs or 10_000, seed=seed, image_size=image_size or 64)
    if name == "tuxpaint":
        from pairsift.benchmarks.datasets import tuxpaint

        return tuxpaint.TuxpaintSource(root or tuxpaint.DEFAULT_ROOT, pairs, max_side=image_size or 128)
    if name == "fashion-mnist":
        from pairsift.benchmarks.datasets import fashion_mnist

        return fashion_mnist.FashionMnistSource(
            root or fashion_mnist.DEFAULT_ROOT, pairs, seed=seed, image_size=image_size or 28
        )
    if name == "openclipart":
        from pairsift.benchmarks.datasets import openclipart

        return openclipart.OpenclipartSource(
            root or openclipart.DEFAULT_ROOT, pairs, max_side=image_size or 128
        )
    raise ValueError(f"unknown dataset {name!r}: expected one of {', '.join(DATASETS)}")


def _langs(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [lang.strip() for lang in value.split(",") if lang.strip()]


def run(args: argparse.Namespace) -> int:
    try:
        source = make_source(args.dataset, args)
    except MissingDatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from pairsift.pipeline.datasets.writer import build_dataset

    ground_truth = getattr(source, "has_ground_truth", True)
    print(f"building {args.dataset}: {len(source)} pairs -> {args.out}", flush=True)
    summary: dict[str, Any] = build_dataset(
        source,
        args.out,
        noise=args.noise,
        mode=args.noise_mode,
        seed=args.seed,
        shard_size=args.shard_size,
        ship_langs=_langs(args.langs),
        noise_langs=_langs(args.noise_langs),
        ground_truth=ground_truth,
        progress=lambda line: print(line, flush=True),
    )
    ratio = summary["true_noise_ratio"]
    ratio_text = "n/a (no ground truth)" if ratio is None else (
        f"{ratio:.4f} overall, {summary['train_noise_ratio']:.4f} of train"
    )
    print(
        f"done: {summary['pairs']} pairs in {summary['shards']} shard(s) {summary['by_split']}; "
        f"noise {summary['mode']} true ratio {ratio_text}"
    )
    return 0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "data", help="build benchmark datasets with known (injected) noise"
    )
    datasets = parser.add_subparsers(dest="dataset", metavar="DATASET", required=True)
    for name in DATASETS:
        sub = datasets.add_parser(name, help=f"build the {name} dataset")
        sub.add_argument("--out", required=True, help="output folder (local, gs://, s3://)")
        sub.add_argument("--pairs", type=int, default=None,
                         help="number of pairs (synth default 10000; others: subsample)")
        sub.add_argument("--noise", type=float, default=0.0, help="noise rate F in [0, 1]")
        sub.add_argument("--noise-mode", choices=NOISE_MODES, default="caption",
                         help="caption/image shuffle (NCR/DECL), partial word swap, translation")
        sub.add_argument("--langs", default=None,
                         help="comma-separated translations to ship (default: all available)")
        sub.add_argument("--noise-langs", default=None,
                         help="languages translation noise corrupts (default: --langs or all)")
        sub.add_argument("--seed", type=int, default=0)
        sub.add_argument("--shard-size", type=int, default=10_000)
        sub.add_argument("--image-size", type=int, default=None,
                         help="synth: side in px (64); stamps/clip art: max side (128)")
        sub.add_argument("--root", default=None, help="raw data folder (default: Debian path)")
        sub.set_defaults(func=run)
