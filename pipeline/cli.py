"""The `pairsift` console script.

Each command lives in its own module exposing ``register(subparsers)``, which adds a
subparser and sets ``func``; this file only wires them together. ``bench`` commands register
under the ``bench`` group the same way.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

# module path -> where it registers ("top" = `pairsift X`, "bench" = `pairsift bench X`)
COMMAND_MODULES: tuple[tuple[str, str], ...] = (
    ("pairsift.pipeline.run_cli", "top"),  # run
    ("pairsift.pipeline.demo", "top"),  # demo
    ("pairsift.pipeline.datasets.cli", "top"),  # data
    ("pairsift.pipeline.train_cli", "top"),  # train, eval
    ("pairsift.pipeline.bench.embed", "bench"),
    ("pairsift.pipeline.bench.quality", "bench"),
    ("pairsift.pipeline.bench.translate", "bench"),
    ("pairsift.pipeline.bench.crosslingual", "bench"),
    ("pairsift.pipeline.bench.score_cost", "bench"),
    ("pairsift.pipeline.bench.ranking_bound", "bench"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pairsift",
        description="Clean web-scraped image–caption pairs: find mismatched pairs, "
        "write curated WebDataset shards with per-pair scores.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    bench = commands.add_parser("bench", help="benchmarks that print measured figures")
    bench_commands = bench.add_subparsers(dest="bench_command", metavar="BENCH")
    bench.set_defaults(func=lambda args: bench.print_help() or 2)
    groups = {"top": commands, "bench": bench_commands}
    for module_name, group in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("pairsift"):
                continue  # command not part of this build
            raise
        module.register(groups[group])
    return parser


class _DropImportNoise(logging.Filter):
    """Beam warns at import about optional GCP clients a local run never uses."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "apitools not found" not in record.getMessage()


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(_DropImportNoise())
    if not verbose:  # keep pairsift's progress lines readable; Beam's own INFO is for -v
        for name in ("apache_beam", "timm", "open_clip"):
            logging.getLogger(name).setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    setup_logging(verbose="-v" in (argv if argv is not None else sys.argv[1:]) or
                  "--verbose" in (argv if argv is not None else sys.argv[1:]))
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if extra and not getattr(args, "accepts_extra", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = list(extra)
    result = args.func(args)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
