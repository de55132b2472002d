"""`pairsift bench from-embeddings`: wall time and peak memory of `pairsift run --embeddings`
on synthetic clip-retrieval folders of several sizes, with the detection AUC it reaches.

The vectors stand in for a CLIP model's: a latent per pair drives its image and its caption
vector through two fixed random maps plus noise; a noisy pair's caption vector comes from
another pair's latent. ``is_noisy`` in the metadata is the ground truth the summary scores.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def write_clip_layout(root: Path, pairs: int, part_size: int = 10_000, dim: int = 512,
                      noise: float = 0.3, seed: int = 0) -> None:
    """``pairs`` row-aligned vectors in clip-retrieval's layout (float16, as it writes)."""
    rng = np.random.default_rng(seed)
    latent_dim = 32
    to_image = rng.standard_normal((latent_dim, dim)) / np.sqrt(latent_dim)
    to_text = rng.standard_normal((latent_dim, dim)) / np.sqrt(latent_dim)
    for folder in ("img_emb", "text_emb", "metadata"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for part, start in enumerate(range(0, pairs, part_size)):
        n = min(part_size, pairs - start)
        z = rng.standard_normal((n, latent_dim))
        noisy = rng.random(n) < noise
        z_text = np.where(noisy[:, None], rng.standard_normal((n, latent_dim)), z)
        image = z @ to_image + 0.5 * rng.standard_normal((n, dim))
        text = z_text @ to_text + 0.5 * rng.standard_normal((n, dim))
        for name, vectors in (("img_emb", image), ("text_emb", text)):
            unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
            np.save(root / name / f"{name}_{part}.npy", unit.astype(np.float16))
        pq.write_table(pa.table({
            "key": [f"{start + i:09d}" for i in range(n)],
            "url": [f"https://example.invalid/{start + i}.jpg" for i in range(n)],
            "caption": [f"caption {start + i}" for i in range(n)],
            "is_noisy": noisy.tolist(),
        }), root / "metadata" / f"metadata_{part}.parquet")


def timed_run(embeddings: Path, out: Path, config: str | None) -> dict[str, float]:
    """`pairsift run --embeddings` in a child process: wall seconds and the child's peak RSS."""
    command = [sys.executable, "-m", "pairsift.pipeline.cli", "run", "--embeddings",
               str(embeddings), "--output", str(out), *(["--config", config] if config else [])]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.monotonic()
    subprocess.run(command, check=True, capture_output=True)
    wall = time.monotonic() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    summary = json.loads((out / "summary.json").read_text())
    return {"wall_s": wall, "peak_rss_mib": max(peak, before) / 1024,
            "auc": (summary.get("detection") or {}).get("detection_roc_auc"),
            "kept": summary["pairs"]["kept"], "input": summary["pairs"]["input"]}


def main(args: argparse.Namespace) -> int:
    sizes = [int(s) for s in args.pairs.split(",")]
    print("| pairs | wall s | peak RSS MiB | detection AUC | kept |")
    print("|---:|---:|---:|---:|---:|")
    for pairs in sizes:  # one child per size: each peak RSS is its own process's
        with tempfile.TemporaryDirectory(dir=args.work) as scratch:
            root = Path(scratch)
            write_clip_layout(root / "embeddings", pairs, seed=args.seed)
            figures = _isolated(root, args.config)
        auc = f"{figures['auc']:.3f}" if figures["auc"] is not None else "n/a"
        print(f"| {pairs:,} | {figures['wall_s']:.1f} | {figures['peak_rss_mib']:.0f} | {auc} "
              f"| {figures['kept']:,} |", flush=True)
    return 0


def _isolated(root: Path, config: str | None) -> dict[str, float]:
    """Run the measurement in a fresh interpreter, so RUSAGE_CHILDREN peaks do not carry over
    from the previous size."""
    code = ("import json, sys; from pathlib import Path; "
            "from pairsift.benchmarks.from_embeddings import timed_run; "
            "print(json.dumps(timed_run(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] or None)))")
    out = subprocess.run([sys.executable, "-c", code, str(root / "embeddings"), str(root / "out"),
                          config or ""], check=True, capture_output=True, text=True,
                         env={**os.environ})
    return json.loads(out.stdout.strip().splitlines()[-1])


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("from-embeddings",
                                   help="time and memory of pairsift run --embeddings by size")
    parser.add_argument("--pairs", default="10000,100000", help="comma-separated sizes")
    parser.add_argument("--work", default=None, help="scratch folder (default: the system's)")
    parser.add_argument("--config", help="the run's config file")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(func=main)
