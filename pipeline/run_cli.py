"""`pairsift run --input PATH --output OUT [--config FILE] [any Beam pipeline flag]`."""

from __future__ import annotations

import argparse
import json

from pairsift.models.config import PairsiftConfig
from pairsift.models.recipe import load_recipe
from pairsift.pipeline.config_io import load_config
from pairsift.pipeline.options import check_flags, make_options


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run",
        allow_abbrev=False,  # unknown flags go to Beam: a prefix must not pass as a flag
        help="score, label and curate a dataset (unknown flags go to Beam's PipelineOptions)",
        description="Runs pass 1 (embed), the fit, and pass 2 (curate). Flags pairsift does not "
        "know are Beam pipeline options, e.g. --runner DataflowRunner --project P --region R "
        "--temp_location gs://B/tmp, or --direct_num_workers 2 locally.",
    )
    parser.add_argument("--input", help="tars, img2dataset folder, table or image folder")
    parser.add_argument("--embeddings", help="precomputed embeddings in clip-retrieval's layout "
                        "(img_emb/, text_emb/, metadata/): skip pass 1; with --input too, the "
                        "image shards are curated by key")
    parser.add_argument("--output", required=True, help="output folder (local, gs://, s3://)")
    parser.add_argument("--config", help="JSON or YAML config (see docs/config.md)")
    parser.add_argument("--encoder", help="encoder spec, overrides the config's encoder.spec")
    parser.add_argument("--langs", help="comma-separated target languages, e.g. pt,es")
    parser.add_argument("--seed", type=int, help="overrides the config's seed")
    parser.add_argument("--allow-paths-outside-input", action="store_true",
                        help="let table rows name any path, not only files under the table's "
                        "folder and http(s)/gs/s3 URLs")
    for role in ("key", "image", "caption"):
        parser.add_argument(f"--{role}-column", help=f"a table's {role} column (default: found by "
                            "name in any case, with LAION/DataComp/img2dataset aliases)")
    parser.add_argument("--recipe", help="the method: a packaged recipe name or a recipe file "
                        "(see docs/recipes.md); overrides the config's recipe")
    parser.add_argument(
        "--wave-size", type=int, default=4,
        help="locally, input shards per Beam pipeline in pass 1 (progress is saved per wave); 0 = all",
    )
    own = [s for action in parser._actions for s in action.option_strings if s.startswith("--")]
    parser.set_defaults(func=run_command, accepts_extra=True, own_flags=own)


def apply_overrides(cfg: PairsiftConfig, args: argparse.Namespace) -> PairsiftConfig:
    if getattr(args, "recipe", None):
        cfg.recipe, cfg.method = args.recipe, load_recipe(args.recipe)
    if getattr(args, "allow_paths_outside_input", False):
        cfg.limits.allow_paths_outside_input = True
    for role in ("key", "image", "caption"):
        if getattr(args, f"{role}_column", None):
            setattr(cfg.input, f"{role}_column", getattr(args, f"{role}_column"))
    if getattr(args, "encoder", None):
        cfg.encoder.spec = args.encoder
    if getattr(args, "langs", None):
        cfg.translate.target_langs = [x.strip() for x in args.langs.split(",") if x.strip()]
    if getattr(args, "seed", None) is not None:
        cfg.seed = args.seed
    return cfg


def run_command(args: argparse.Namespace) -> int:
    from pairsift.pipeline.run import run

    check_flags(args.extra, args.own_flags)
    if not args.input and not args.embeddings:
        raise SystemExit("pairsift run needs --input, --embeddings, or both")
    cfg = apply_overrides(load_config(args.config), args)
    from pairsift.pipeline.driver_job import is_template_launch, launch_driver_job

    if is_template_launch(options := make_options(args.extra)):
        launch_driver_job(args.argv, options)
        print("flex template: the driver job was handed to the launcher; it runs every job")
        return 0
    result = run(args.input, args.output, cfg, beam_args=args.extra, wave_size=args.wave_size,
                 embeddings=args.embeddings)
    if result.summary.get("dry_run"):
        print("dry run: job graphs built, nothing ran")
        return 0
    pairs = result.summary["pairs"]
    print(json.dumps({"output": result.layout.root, "pairs": pairs,
                      "estimated_noise_ratio": result.summary.get("estimated_noise_ratio"),
                      "detection": result.summary.get("detection")}, indent=2))
    return 0
