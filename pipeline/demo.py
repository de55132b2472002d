"""`pairsift demo`: generate a small noisy synth set and run the whole pipeline on it.

Sized for a 2-core laptop (a few minutes with the offline default towers); prints counts per
label, the estimated vs true noise ratio, the detection ROC-AUC and where the outputs are.
"""

from __future__ import annotations

import argparse
import json
import logging
import time

from pairsift.models.config import PairsiftConfig
from pairsift.models.storage.atomic import join
from pairsift.pipeline.options import check_flags

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="build a small noisy synth set and run the pipeline on it")
    parser.add_argument("--output", default="demo_out", help="folder for the input set and the run")
    parser.add_argument("--pairs", type=int, default=800)
    parser.add_argument("--noise", type=float, default=0.5, help="share of pairs whose caption is shuffled")
    parser.add_argument("--noise-mode", default="caption",
                        choices=["caption", "image", "partial", "neighbour", "mixed"])
    parser.add_argument("--encoder", default="default", help="encoder spec (default: offline towers)")
    parser.add_argument("--image-size", type=int, default=128, help="tower input resolution (smaller = faster)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--recipe", default="pairsift", help="the method (see docs/recipes.md)")
    own = [s for action in parser._actions for s in action.option_strings if s.startswith("--")]
    parser.set_defaults(func=demo_command, accepts_extra=True, own_flags=own)


def demo_config(args: argparse.Namespace) -> PairsiftConfig:
    cfg = PairsiftConfig(recipe=args.recipe, seed=args.seed)
    cfg.encoder.spec = args.encoder
    cfg.encoder.image_size = args.image_size
    cfg.encoder.batch_size = 32
    return cfg


def demo_command(args: argparse.Namespace) -> int:
    from pairsift.pipeline.datasets.synth import SynthSource
    from pairsift.pipeline.datasets.writer import build_dataset
    from pairsift.pipeline.run import run

    check_flags(getattr(args, "extra", []), args.own_flags)
    started = time.monotonic()
    input_dir = join(args.output, "input")
    run_dir = join(args.output, "run")
    cfg = demo_config(args)
    log.info("demo: writing %d synth pairs (%.0f%% %s noise) to %s", args.pairs, 100 * args.noise, args.noise_mode, input_dir)
    dataset = build_dataset(
        SynthSource(args.pairs, seed=args.seed, image_size=64, image_format="jpg"),
        input_dir,
        noise=args.noise,
        mode=args.noise_mode,
        seed=args.seed,
        shard_size=max(50, args.pairs // 4),  # four input shards: two pass-1 waves
        progress=lambda line: log.info("demo data: %s", line),
    )
    result = run(input_dir, run_dir, cfg, beam_args=getattr(args, "extra", []), wave_size=2)
    summary = result.summary
    detection = summary.get("detection", {})
    report = {
        "pairs": summary["pairs"]["input"],
        "by_label": summary["pairs"]["by_label"],
        "by_status": summary["pairs"]["by_status"],
        "estimated_noise_ratio": round(summary.get("estimated_noise_ratio") or 0.0, 4),
        "true_noise_ratio": round(detection.get("true_noise_ratio", dataset.get("true_noise_ratio") or 0.0), 4),
        "detection_roc_auc": round(detection["detection_roc_auc"], 4) if "detection_roc_auc" in detection else None,
        "kept_precision": detection.get("kept_precision"),
        "kept_recall": detection.get("kept_recall"),
        "seconds": round(time.monotonic() - started, 1),
    }
    print(json.dumps(report, indent=2))
    print(f"curated shards: {result.layout.shards}/  audit: {result.layout.audit}/")
    print(f"summary: {result.layout.summary}  report: {result.layout.report}  model: {result.layout.model}/")
    return 0
