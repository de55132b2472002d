"""`pairsift bench report --run OUT`: how big report.html is and how long it takes to build.

The report is built by the run's summary stage from bounded inputs (histograms, the noise fit,
the galleries the tally job picked); this rebuilds it on a finished run with the very function
the summary stage calls, times each build, and prints its size, its thumbnail count and the
run's own tally seconds (which include picking the galleries from the audit). Give it the OUT
of a large run (e.g. the one `pairsift bench stages` leaves) to check that neither size nor
time grows with the number of pairs.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def main(args: argparse.Namespace) -> int:
    from pairsift.benchmarks.quality import code_version
    from pairsift.models.noise.fit import NoiseFit
    from pairsift.models.storage.atomic import read_json
    from pairsift.pipeline.layout import RunLayout
    from pairsift.pipeline.options import usable_cores
    from pairsift.pipeline.report.build import build_report
    from pairsift.pipeline.tally import Tally

    layout = RunLayout(args.run)
    summary = read_json(layout.summary)
    fit = NoiseFit.from_dict(read_json(layout.noise_fit))
    tally = Tally.from_dict(read_json(layout.tally))
    seconds, page = [], ""
    for _ in range(args.repeat):
        started = time.perf_counter()
        page = build_report(layout, summary, fit, tally, f"the input of {args.run}")
        seconds.append(time.perf_counter() - started)
    if args.save:
        Path(args.save).write_text(page, encoding="utf-8")
    size = len(page.encode("utf-8"))
    print(f"pairsift bench report: run of {summary['pairs']['input']:,} pairs "
          f"({len(summary.get('shards', {})):,} shards), {usable_cores()} cores; code {code_version()}")
    print(f"command: {' '.join(['pairsift', 'bench', 'report', *sys.argv[3:]])}")
    print(f"report.html {size / 2**20:.2f} MiB ({size:,} bytes), "
          f"{page.count('data:image/jpeg;base64,'):,} thumbnails, {page.count('<svg'):,} plots")
    print(f"build: {', '.join(f'{s:.2f}' for s in seconds)} s (best {min(seconds):.2f} s); "
          f"the run's tally job (counts + galleries from the audit): "
          f"{summary.get('timings_s', {}).get('tally', float('nan')):.2f} s")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("report", help="report.html's size and build time on a finished run")
    parser.add_argument("--run", required=True, help="the OUT folder of a finished pairsift run")
    parser.add_argument("--repeat", type=int, default=3, help="builds to time")
    parser.add_argument("--save", default=None, help="also write the rebuilt page here")
    parser.set_defaults(func=main)
