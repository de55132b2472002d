"""`pairsift bench translation-labels`: the per-language division, measured where it ships.

For each data seed it builds a dataset with `pairsift data` and runs `pairsift run --langs`
on it, as a user would, then reads OUT/audit and OUT/shards:

- detection ROC-AUC of ``1 − p_clean_<lang>`` against the translations the build broke
  (``noise_kind == "translation"``; only for translation noise);
- the share of broken translations among the shipped ``KEY.<lang>.txt`` (and in the input);
- the share of faithful translations of kept pairs that were dropped;
- the English label's detection AUC, kept precision and recall (pair noise only).

Dev seeds (100, 101) tune; other seeds report (docs/noise_modelling.md).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from sklearn.metrics import roc_auc_score

from pairsift.benchmarks.quality import code_version, command_line


def _shipped_translations(out: Path, lang: str) -> set[str]:
    keys: set[str] = set()
    for shard in sorted((out / "shards").glob("*.tar")):
        with tarfile.open(shard) as tar:
            keys.update(m.name.split(".", 1)[0] for m in tar.getmembers()
                        if m.name.endswith(f".{lang}.txt"))
    return keys


def measure(out: Path, lang: str) -> dict[str, Any]:
    """The run's per-language and English figures from its audit and shards."""
    audit = pl.read_parquet(sorted((out / "audit").glob("*.parquet")))
    audit = audit.filter(pl.col("status") == "ok")
    broken = (audit["noise_kind"] == "translation").to_numpy()
    pair_noisy = audit["is_noisy"].to_numpy().astype(bool) & ~broken
    shipped = _shipped_translations(out, lang)
    ships = np.asarray([k in shipped for k in audit["key"].to_list()])
    kept = audit["label"].is_in(["clean", "hard"]).to_numpy()
    row: dict[str, Any] = {
        "pairs": len(audit), "broken_in_input": float(broken.mean()),
        "shipped": int(ships.sum()),
        "broken_shipped": float(broken[ships].mean()) if ships.any() else None,
        "faithful_dropped": float((kept & ~broken & ~ships).sum() / max((kept & ~broken).sum(), 1)),
    }
    p_lang = audit[f"p_clean_{lang}"].to_numpy().astype(float)
    has = np.isfinite(p_lang)
    if broken.any():
        row["auc_lang"] = float(roc_auc_score(broken[has], -p_lang[has]))
    if pair_noisy.any():
        row["auc_english"] = float(roc_auc_score(pair_noisy, -audit["p_clean"].to_numpy()))
        row["precision_english"] = float((~pair_noisy[kept]).mean())
        row["recall_english"] = float((kept & ~pair_noisy).sum() / (~pair_noisy).sum())
    return row


def _run(command: list[str], log: Path) -> None:
    with log.open("w") as handle:
        done = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed (exit {done.returncode}); see {log}")


def run_seed(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    """Build one seed's data and run the shipped pipeline on it."""
    work = Path(args.work) / f"seed{seed}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    cli = [sys.executable, "-m", "pairsift.pipeline.cli"]
    _run([*cli, "data", args.dataset, "--out", str(work / "data"), "--langs", args.data_langs,
          "--noise", str(args.noise), "--noise-mode", args.noise_mode, "--seed", str(seed)],
         work / "data.log")
    _run([*cli, "run", "--input", str(work / "data"), "--output", str(work / "out"),
          "--langs", args.lang], work / "run.log")
    return {"seed": seed, **measure(work / "out", args.lang)}


def _fmt(value: Any) -> str:
    return "–" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


COLUMNS = ("seed", "auc_lang", "broken_in_input", "broken_shipped", "shipped", "faithful_dropped",
           "auc_english", "precision_english", "recall_english")


def main(args: argparse.Namespace) -> int:
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        rows.append(run_seed(args, seed))
        print("  ".join(f"{c} {_fmt(rows[-1].get(c))}" for c in COLUMNS), flush=True)
    result = {"command": command_line("translation-labels"), "code": code_version(), "rows": rows}
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"code {result['code']}; {result['command']}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "translation-labels", help="per-language labels through pairsift run: AUC, broken share shipped")
    parser.add_argument("--dataset", default="tuxpaint")
    parser.add_argument("--data-langs", default="pt_BR", help="translations the build ships")
    parser.add_argument("--lang", default="pt", help="the run's target language (--langs)")
    parser.add_argument("--noise", type=float, default=0.3)
    parser.add_argument("--noise-mode", default="translation")
    parser.add_argument("--seeds", default="0", help="data seeds, comma-separated (dev: 100,101)")
    parser.add_argument("--work", required=True, help="a scratch folder (each seed's is emptied)")
    parser.add_argument("--out", help="write the figures as JSON here")
    parser.set_defaults(func=main)
