"""`pairsift bench compare OLD.json NEW.json`: two quality tables' rows side by side.

Prints, per setting and method present in both, the seed means of detection AUC, kept
precision and recall, estimated noise and rSum, old → new: how a code change moved the
figures, read off the JSON files `pairsift bench quality` writes beside its tables.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from typing import Any

import numpy as np

from pairsift.benchmarks.quality_runs import METHOD_ORDER, method_title

FIGURES = ("auc", "precision", "recall", "est_noise", "rsum")


def seed_means(rows: list[dict[str, Any]], rates: set[float] | None) -> dict[tuple, dict[str, float]]:
    """(mode, rate, method) → mean of each figure over the seeds (None where not measured)."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        if rates is None or round(row["rate"], 4) in rates:
            groups[(row["mode"], row["rate"], row["method"])].append(row)
    out = {}
    for key, members in groups.items():
        means = {}
        for name in FIGURES:
            values = [m[name] for m in members if m.get(name) is not None]
            means[name] = float(np.mean(values)) if values else None
        means["seeds"] = len(members)
        out[key] = means
    return out


def _cell(old: float | None, new: float | None, digits: int) -> str:
    if old is None and new is None:
        return "–"
    def show(value: float | None) -> str:
        return "–" if value is None else f"{value:.{digits}f}"

    return f"{show(old)} → {show(new)}"


def compare_table(old: list[dict[str, Any]], new: list[dict[str, Any]],
                  rates: set[float] | None = None, methods: list[str] | None = None) -> str:
    before, after = seed_means(old, rates), seed_means(new, rates)
    order = {m: i for i, m in enumerate(METHOD_ORDER)}
    keys = sorted(set(before) & set(after), key=lambda k: (k[0], k[1], order.get(k[2], 99)))
    lines = []
    setting = None
    for mode, rate, method in keys:
        if methods and method not in methods:
            continue
        if (mode, rate) != setting:
            setting = (mode, rate)
            lines += ["", f"### {mode} shuffle, {round(rate * 100)}% noise", "",
                      "| method | detection AUC | kept precision | kept recall | est. noise | rSum |",
                      "|---|---|---|---|---|---|"]
        b, a = before[(mode, rate, method)], after[(mode, rate, method)]
        cells = [_cell(b[f], a[f], 1 if f == "rsum" else 3) for f in FIGURES]
        lines.append(f"| {method_title(method)} | " + " | ".join(cells) + " |")
    return "\n".join(lines).lstrip("\n")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("compare", help="two quality tables' figures, old → new")
    parser.add_argument("old", help="a quality table's JSON (benchmarks/results/<dataset>.json)")
    parser.add_argument("new", help="the JSON of the rerun to compare with")
    parser.add_argument("--noise", help="noise rates to show, comma-separated (default: all)")
    parser.add_argument("--methods", help="methods to show, comma-separated (default: all)")
    parser.set_defaults(func=compare_command)


def compare_command(args: argparse.Namespace) -> int:
    with open(args.old, encoding="utf-8") as handle:
        old = json.load(handle)["rows"]
    with open(args.new, encoding="utf-8") as handle:
        new = json.load(handle)["rows"]
    rates = {round(float(r), 4) for r in args.noise.split(",")} if args.noise else None
    methods = args.methods.split(",") if args.methods else None
    print(compare_table(old, new, rates, methods))
    return 0
