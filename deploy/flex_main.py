"""Flex-template entry point: the template's parameters become `pairsift run` flags."""

from pairsift.pipeline.cli import main

if __name__ == "__main__":
    import sys

    raise SystemExit(main(["run", *sys.argv[1:]]))
