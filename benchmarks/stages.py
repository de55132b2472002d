"""`pairsift bench stages`: every stage of `pairsift run`, timed where it ships, and the ratios
that say how far each is from its floor.

One `pairsift run` (a child process, the CLI users run) over ``--pairs`` synth pairs with the
cheapest towers (``open_clip:pairsift-tiny``), so that the stages after embedding dominate:
its ``summary.json`` gives each stage's seconds with Beam's start-up included, and the peak
RSS after it. Then, in this process on one core (torch and faiss pinned to one thread), the
steady state of the per-shard work of the score pass and pass 2, on the run's own outputs
(a scratch copy): the same DoFns ``pairsift run`` executes, without a runner around them.
Ratios, each in one run on the same data:

- pass 2 against a bare copy of the kept members' bytes (range reads into a file, nothing else);
- the embed stage against the bare model loop (benchmarks/embed.py, on the first shard);
- the noise fit's mixture against scikit-learn's two-component GaussianMixture on the same losses.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TINY = "open_clip:pairsift-tiny"
RUN_ORDER = ("pass1", "dedup", "fit", "score", "mixture", "pass2", "tally", "final_model")


def build_input(path: Path, pairs: int, shard_size: int, seed: int) -> None:
    from pairsift.pipeline.datasets.synth import SynthSource
    from pairsift.pipeline.datasets.writer import build_dataset

    build_dataset(SynthSource(pairs, seed=seed, image_size=64, image_format="jpg"), str(path),
                  noise=0.5, mode="caption", seed=seed, shard_size=shard_size)


def shipped_run(data: Path, out: Path, log: Path) -> dict[str, Any]:
    """`pairsift run` as users run it; its summary.json."""
    command = [sys.executable, "-m", "pairsift.pipeline.cli", "run", "--input", str(data),
               "--output", str(out), "--encoder", TINY]
    with log.open("w", encoding="utf-8") as errors:
        done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=errors, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"pairsift run failed ({done.returncode}); its log: {log}")
    return json.loads((out / "summary.json").read_text())


def _one_thread() -> None:
    import faiss
    import torch

    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)


def _scratch(out: Path, scratch: Path, drop: tuple[str, ...]) -> Path:
    """A copy of the run's output without ``drop`` (folders the timed work writes again)."""
    shutil.rmtree(scratch, ignore_errors=True)
    shutil.copytree(out, scratch, ignore=shutil.ignore_patterns(*drop))
    return scratch


def steady_score(out: Path, scratch: Path) -> float:
    """Seconds of ScoreShard over every shard, one after another, on one core."""
    from pairsift.pipeline.dedup import embedding_shard_names
    from pairsift.pipeline.layout import RunLayout
    from pairsift.pipeline.score_pass import ScoreShard

    layout = RunLayout(str(_scratch(out, scratch, ("scores", "shards", "audit"))))
    cfg = _config(out)
    fn = ScoreShard(layout, cfg)
    fn.setup()
    start = time.perf_counter()
    for name in embedding_shard_names(layout):
        list(fn.process(name))
    return time.perf_counter() - start


def steady_pass2(out: Path, scratch: Path) -> float:
    """Seconds of CurateShard over every input shard, on one core."""
    from pairsift.pipeline.audit_schema import audit_schema
    from pairsift.pipeline.layout import RunLayout
    from pairsift.pipeline.pass2 import CurateShard

    layout = RunLayout(str(_scratch(out, scratch, ("shards", "audit"))))
    cfg, shards = _config(out), _shards(out)
    start = time.perf_counter()
    schema = audit_schema([layout.embeddings_file(s.name) for s in shards],
                          [layout.scores_file(s.name) for s in shards], cfg.translate.target_langs)
    fn = CurateShard(layout, cfg, schema)
    fn.setup()
    for i, shard in enumerate(shards):
        list(fn.process((i, shard)))
    return time.perf_counter() - start


def bare_copy(out: Path, scratch: Path) -> tuple[float, int]:
    """Seconds to range-read the kept images' bytes and write them to one file per shard:
    the floor of pass 2's work. Returns (seconds, bytes)."""
    import polars as pl

    from pairsift.pipeline.io.byte_ranges import read_ranges

    scratch.mkdir(parents=True, exist_ok=True)
    kept = pl.read_parquet(out / "audit" / "*.parquet", columns=["key", "label"]).filter(
        pl.col("label").is_in(["clean", "hard"]))["key"].to_list()
    wanted, total = set(kept), 0
    start = time.perf_counter()
    for shard in _shards(out):
        ranges = pl.read_parquet(out / "embeddings" / f"{shard.name}.parquet",
                                 columns=["key", "member_offset", "member_size"])
        ranges = ranges.filter(pl.col("key").is_in(wanted))
        data = read_ranges(shard.path, ranges["member_offset"].to_list(),
                           ranges["member_size"].to_list())
        with open(scratch / f"{shard.name}.bin", "wb") as handle:
            for block in data:
                handle.write(block)
                total += len(block)
    return time.perf_counter() - start, total


def mixture_against_sklearn(out: Path) -> tuple[float, float]:
    """Seconds of the noise fit (from the run's histograms) and of sklearn's two-component
    GaussianMixture on the same unique pairs' losses."""
    import numpy as np
    import polars as pl
    from sklearn.mixture import GaussianMixture

    from pairsift.models.noise.fit import NoiseFit, NoiseHistograms
    from pairsift.models.storage.atomic import read_json
    from pairsift.pipeline.layout import RunLayout

    layout, cfg = RunLayout(str(out)), _config(out)
    hists = NoiseHistograms.from_dict(read_json(layout.histograms))
    start = time.perf_counter()
    NoiseFit.fit(hists, cfg)
    ours = time.perf_counter() - start
    scores = pl.read_parquet(out / "scores" / "*.parquet", columns=["loss", "duplicate"])
    loss = scores.filter(~pl.col("duplicate"))["loss"].to_numpy().reshape(-1, 1)
    start = time.perf_counter()
    GaussianMixture(2, random_state=0).fit(np.asarray(loss, dtype=np.float64))
    return ours, time.perf_counter() - start


def embed_against_bare(data: Path, limit: int) -> dict[str, Any]:
    """benchmarks/embed.py's two sides on the first ``limit`` pairs, with the tiny towers."""
    from pairsift.benchmarks.embed import run_bench

    args = argparse.Namespace(
        threads=1, langs="", encoder=TINY, multilingual=None, image_size=None, batch_size=32,
        device="cpu", precision="auto", decode_threads=0, data=str(data), limit=limit,
        max_image_pixels=64_000_000, rounds=1)
    return run_bench(args)


def _config(out: Path):
    from pairsift.models.config import PairsiftConfig

    return PairsiftConfig.from_dict(json.loads((out / "config.json").read_text())["config"])


def _shards(out: Path):
    from pairsift.pipeline.io.shards import InputShard

    return [InputShard(**shard) for shard in json.loads((out / "input_shards.json").read_text())]


def _rate(pairs: int, seconds: float, cores: int = 1) -> str:
    return f"{pairs / seconds / cores:,.0f}" if seconds > 0 else "n/a"


def report(summary: dict[str, Any], steady: dict[str, float], cores: int) -> list[str]:
    """The stage table: the run's seconds, pairs/s/core and peak RSS, and the steady state."""
    pairs, kept = summary["pairs"]["input"], summary["pairs"]["kept"]
    lines = ["| stage | run s | pairs/s/core (run) | peak RSS MiB | steady s (1 core) | pairs/s/core (steady) |",
             "|---|---:|---:|---:|---:|---:|"]
    timings = summary["timings_s"]
    order = [n for n in RUN_ORDER if n in timings] + sorted(set(timings) - set(RUN_ORDER))
    for name in order:
        seconds = timings[name]
        counted = kept if name == "final_model" else pairs
        still = steady.get(name)
        lines.append(
            f"| {name} | {seconds:.2f} | {_rate(counted, seconds, cores)} "
            f"| {summary.get('peak_rss_mib', {}).get(name, float('nan')):.0f} "
            f"| {'' if still is None else f'{still:.2f}'} | {'' if still is None else _rate(counted, still)} |")
    return lines


def main(args: argparse.Namespace) -> int:
    """Why one piece: the bench is a script of measurements in a fixed order (input, the
    shipped run, then each steady-state and ratio measurement on its outputs)."""
    import logging

    from pairsift.benchmarks.quality import code_version
    from pairsift.pipeline.options import usable_cores

    logging.getLogger("apache_beam").setLevel(logging.WARNING)
    version, cores = code_version(), usable_cores()
    work = Path(args.work or tempfile.mkdtemp(prefix="pairsift-stages-"))
    work.mkdir(parents=True, exist_ok=True)
    data = Path(args.data) if args.data else work / "input"
    if not args.data:
        build_input(data, args.pairs, args.shard_size, args.seed)
    summary = shipped_run(data, work / "out", work / "run.log")
    _one_thread()
    out = work / "out"
    steady = {"score": steady_score(out, work / "score"), "pass2": steady_pass2(out, work / "pass2")}
    copy_s, copied = bare_copy(out, work / "copy")
    ours, sklearn_s = mixture_against_sklearn(out)
    embed = embed_against_bare(data, args.embed_pairs)
    print(f"pairsift bench stages: {summary['pairs']['input']:,} synth pairs, towers {TINY}, "
          f"{cores} cores; code {version}")
    print(f"command: {' '.join(['pairsift', 'bench', 'stages', *sys.argv[3:]])}\n")
    print("\n".join(report(summary, steady, cores)))
    print(f"\npass 2 steady / bare copy of the kept bytes ({copied / 2**20:.0f} MiB in {copy_s:.2f} s): "
          f"{steady['pass2'] / copy_s:.2f}x")
    print(f"embed stage / bare model loop ({embed['pairs']} pairs, 1 thread): "
          f"{embed['ratio_stage_over_bare']:.3f} ({embed['stage_images_per_s']:.0f} vs "
          f"{embed['bare_images_per_s']:.0f} images/s; decode+transform alone "
          f"{embed['decode_transform_images_per_s']:.0f}/s)")
    print(f"mixture (noise fit on the histograms) {ours * 1000:.0f} ms / sklearn GaussianMixture "
          f"on the same {summary['pairs']['input']:,} losses {sklearn_s * 1000:.0f} ms: "
          f"{ours / sklearn_s:.3f}x")
    print(f"detection AUC {summary['detection']['detection_roc_auc']:.4f}; outputs under {work}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "stages", help="each stage's seconds, pairs/s/core and peak RSS, with its floor")
    parser.add_argument("--pairs", type=int, default=100_000, help="synth pairs to build")
    parser.add_argument("--data", default=None, help="an existing input instead of building one")
    parser.add_argument("--shard-size", type=int, default=10_000)
    parser.add_argument("--embed-pairs", type=int, default=2_000,
                        help="pairs of the embed-against-bare-loop ratio")
    parser.add_argument("--work", default=None, help="scratch folder (kept; default: a new one)")
    parser.add_argument("--seed", type=int, default=7)
    parser.set_defaults(func=main)
