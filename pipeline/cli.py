"""The `pairsift` console script.

Each command lives in its own module exposing ``register(subparsers)``, which adds a
subparser and sets ``func``; this file only wires them together. ``bench`` commands register
under the ``bench`` group the same way.
"""

from __future__ import annotations

import argparse
import errno
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
    "pairsift.pipeline.audit_cli",  # audit
)
# other installed packages add commands through entry points (the benchmarks package adds
# `pairsift data` and `pairsift bench ...`), so the product never imports them
TOP_GROUP = "pairsift.commands"
BENCH_GROUP = "pairsift.bench_commands"


def _plugin_registrars(group: str) -> list[Callable[[argparse._SubParsersAction], None]]:
    """The installed plugins' command registrars; one that fails to import is skipped with a
    warning, so a broken plugin never takes `pairsift run` down with it."""
    registrars = []
    for ep in sorted(entry_points(group=group), key=lambda ep: ep.name):
        try:
            registrars.append(ep.load())
        except Exception as exc:  # noqa: BLE001 - any import failure of a plugin
            logging.getLogger(__name__).warning("skipping the %r command: %s: %s", ep.name,
                                                type(exc).__name__, exc)
    return registrars


PRODUCT_COMMANDS = frozenset({"run", "demo", "train", "eval", "audit"})


def build_parser(plugins: bool = True) -> argparse.ArgumentParser:
    """The whole command line; ``plugins=False`` leaves out the installed plugins' commands
    (a product command does not pay for importing the benchmarks)."""
    parser = argparse.ArgumentParser(
        prog="pairsift",
        description="Clean web-scraped image–caption pairs: find mismatched pairs, "
        "write curated WebDataset shards with per-pair scores.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of a failure instead of one line")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    bench = commands.add_parser("bench", help="benchmarks that print measured figures")
    bench_commands = bench.add_subparsers(dest="bench_command", metavar="BENCH")
    bench.set_defaults(func=lambda args: bench.print_help() or 2)
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(commands)
    for group, subparsers in ((TOP_GROUP, commands), (BENCH_GROUP, bench_commands)):
        for register in _plugin_registrars(group) if plugins else []:
            register(subparsers)
    return parser


class _DropImportNoise(logging.Filter):
    """Beam warns at import about optional GCP clients a local run never uses."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "apitools not found" not in record.getMessage()


BEAM_FAILURE_LOGGERS = ("apache_beam.runners.common", "apache_beam.runners.worker.sdk_worker",
                        "apache_beam.runners.portability.fn_api_runner.fn_runner")


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(_DropImportNoise())
    if not verbose:  # keep pairsift's progress lines readable; Beam's own INFO is for -v
        for name in ("apache_beam", "timm", "open_clip", "matplotlib"):
            logging.getLogger(name).setLevel(logging.WARNING)
        # cloud clients log each retry with its traceback; the failure reaches the user as
        # one line (console_main), the details with -v
        for name in ("gcsfs", "google", "google_auth_httplib2", "s3fs", "aiobotocore"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
        # a failing DoFn's traceback, logged by the runner before the job's error reaches
        # console_main, which prints its cause as one line (--debug or -v show it all)
        for name in BEAM_FAILURE_LOGGERS:
            logging.getLogger(name).setLevel(logging.CRITICAL)


GLOBAL_FLAGS = ("-v", "--verbose", "--debug")  # accepted anywhere on the command line


def main(argv: Sequence[str] | None = None) -> int:
    given = list(sys.argv[1:] if argv is None else argv)
    setup_logging(verbose=bool({"-v", "--verbose", "--debug"} & set(given)))
    words = [a for a in given if a not in GLOBAL_FLAGS]
    parser = build_parser(plugins=not words or words[0] not in PRODUCT_COMMANDS)
    args, extra = parser.parse_known_args(words)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if extra and not getattr(args, "accepts_extra", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = list(extra)
    args.argv = [a for a in given if a not in GLOBAL_FLAGS]
    result = args.func(args)
    return int(result or 0)


DISK_FULL = "No space left on device"


def error_line(exc: BaseException) -> str:
    """One readable line for a failure: the last line of its message (a Beam job's error
    wraps the worker's traceback and ends with the exception that stopped it)."""
    text = str(exc)
    if getattr(exc, "errno", None) == errno.ENOSPC or DISK_FULL in text:
        return ("the disk is full (No space left on device); free space or choose another "
                "--output, then rerun the same command: the run resumes where it stopped")
    # a gRPC failure (a portable or remote runner's job stream) ends with its repr's ">"
    lines = [line.strip() for line in text.strip().splitlines() if line.strip() not in ("", ">")]
    details = [line for line in lines if line.startswith("details = ")]
    if details:
        hint = (" (on the portable runner, a job longer than --job_server_timeout, 300 s by "
                "default, ends so: raise it)") if "Deadline Exceeded" in details[-1] else ""
        return f"the Beam job service reported: {details[-1][len('details = '):]}{hint}"[:1000]
    if not lines:
        return type(exc).__name__
    if len(lines) > 1 or isinstance(exc, (ValueError, OSError)):
        return lines[-1][:1000]  # our own messages and wrapped job errors say what happened
    return f"{type(exc).__name__}: {lines[0]}"[:1000]


def console_main(argv: Sequence[str] | None = None) -> int:
    """The `pairsift` script: an expected failure is one line on stderr and exit code 1;
    ``--debug`` shows the traceback instead."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        return main(args)
    except KeyboardInterrupt:
        print("pairsift: interrupted", file=sys.stderr)
        return 130
    except SystemExit as exc:  # our own refusals carry a message; argparse's carry a code
        if isinstance(exc.code, str) and "--debug" not in args:
            print(f"pairsift: error: {exc.code}", file=sys.stderr)
            return 1
        raise
    except Exception as exc:  # noqa: BLE001 - every failure gets one line unless --debug
        if "--debug" in args:
            raise
        print(f"pairsift: error: {error_line(exc)} (--debug for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(console_main())
