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
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points

# the product's own commands: module path, each exposing ``register(subparsers)``
COMMAND_MODULES: tuple[str, ...] = (
    "pairsift.pipeline.run_cli",  # run
    "pairsift.pipeline.demo",  # demo
    "pairsift.pipeline.train_cli",  # train, eval
)
# other installed packages add commands through entry points (the benchmarks package adds
# `pairsift data` and `pairsift bench ...`), so the product never imports them
TOP_GROUP = "pairsift.commands"
BENCH_GROUP = "pairsift.bench_commands"


def _plugin_registrars(group: str) -> list[Callable[[argparse._SubParsersAction], None]]:
    found = sorted(entry_points(group=group), key=lambda ep: ep.name)
    return [ep.load() for ep in found]


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
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(commands)
    for group, subparsers in ((TOP_GROUP, commands), (BENCH_GROUP, bench_commands)):
        for register in _plugin_registrars(group):
            register(subparsers)
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
