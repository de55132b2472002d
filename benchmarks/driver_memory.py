"""`pairsift bench driver-memory`: the driver's peak RSS over the stages after pass 1, by size.

For each size, synthetic vectors in clip-retrieval's layout (benchmarks/from_embeddings.py's
writer) go through `pairsift run --embeddings` (import, dedup, fit, score, mixture, label,
tally, final model, summary), with the Beam work on the portable runner and an EXTERNAL
worker pool in other processes (benchmarks/portable.py): the figure is the launching
process's own high-water mark, not its workers'. The driver must stay flat as the input
grows: it holds the fit's bounded sample, never a list of every pair. One config serves
every size, so the fit's fixed cost (its sample cap and epochs) is the same in each.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

# the same bounded fit at every size: the figure is how the driver scales with the input
# (and fewer consistency anchors: their cost is per pair, the score pass's, not the driver's)
BENCH_CONFIG = {"limits": {"max_fit_pairs": 50_000},
                "train": {"epochs": 2, "warmup_epochs": 1, "batch_size": 512},
                "consistency": {"max_anchors": 2_000}}

DRIVER = """
import json, resource, sys
from pairsift.pipeline.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def driver_run(embeddings: Path, out: Path, config: Path, beam_args: list[str], log: Path) -> dict:
    """`pairsift run --embeddings` in a child process; its own peak RSS and wall time (its
    stderr goes to ``log``, kept after the run)."""
    command = [sys.executable, "-c", DRIVER, "run", "--embeddings", str(embeddings),
               "--output", str(out), "--config", str(config), "--debug", *beam_args]
    start = time.monotonic()
    with log.open("w", encoding="utf-8") as errors:
        done = subprocess.run(command, stdout=subprocess.PIPE, stderr=errors, text=True, check=False)
    wall = time.monotonic() - start
    if done.returncode != 0:
        raise RuntimeError(f"pairsift run failed ({done.returncode}); its log: {log}")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    summary = json.loads((out / "summary.json").read_text())
    return {"wall_s": wall, "peak_rss_mib": figures["peak_rss_mib"],
            "timings_s": summary["timings_s"], "pairs": summary["pairs"]["input"],
            "auc": (summary.get("detection") or {}).get("detection_roc_auc")}


def main(args: argparse.Namespace) -> int:
    from pairsift.benchmarks.from_embeddings import write_clip_layout
    from pairsift.benchmarks.portable import portable_cluster

    sizes = [int(s) for s in args.pairs.split(",")]
    print("| pairs | driver peak RSS MiB | wall s | detection AUC | stage seconds |")
    print("|---:|---:|---:|---:|---|")
    peaks = []
    for pairs in sizes:
        with tempfile.TemporaryDirectory(dir=args.work) as scratch:
            root = Path(scratch)
            write_clip_layout(root / "embeddings", pairs, part_size=args.part_size, dim=args.dim,
                              seed=args.seed)
            config = root / "config.yaml"
            config.write_text(yaml.safe_dump(BENCH_CONFIG), encoding="utf-8")
            logs = Path(args.work or tempfile.gettempdir())
            with portable_cluster(log=logs / f"driver-memory-{pairs}-cluster.log") as beam_args:
                log = logs / f"driver-memory-{pairs}.log"
                figures = driver_run(root / "embeddings", root / "out", config,
                                     [*beam_args, "--direct_num_workers", str(args.workers)], log)
        peaks.append(figures["peak_rss_mib"])
        stages = ", ".join(f"{k} {v:.0f}" for k, v in figures["timings_s"].items())
        auc = f"{figures['auc']:.3f}" if figures["auc"] is not None else "n/a"
        print(f"| {figures['pairs']:,} | {figures['peak_rss_mib']:.0f} | {figures['wall_s']:.0f} "
              f"| {auc} | {stages} |", flush=True)
    if len(peaks) > 1:
        print(f"\npeak RSS ratio, largest over smallest input: {peaks[-1] / peaks[0]:.2f}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("driver-memory",
                                   help="the driver's peak RSS after pass 1, by input size")
    parser.add_argument("--pairs", default="1000000,10000000", help="comma-separated sizes")
    parser.add_argument("--dim", type=int, default=64, help="vector width of the synthetic towers")
    parser.add_argument("--part-size", type=int, default=100_000, help="pairs per embeddings part")
    parser.add_argument("--workers", type=int, default=2, help="SDK worker processes")
    parser.add_argument("--work", default=None, help="scratch folder (default: the system's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(func=main)
