"""`pairsift bench quality`: noisy-correspondence detection and retrieval on ground truth.

For each dataset the clean items are embedded once (content-addressed cache); every noise
setting (mode × rate × seed) re-pairs those rows and runs every method: (a) all pairs,
(b) CLIP-score filter, (c) GMM division, (d) pairsift and its ablations (and its division
used as a filter before contrastive training), NCR and DECL
training, (e) the oracle on clean pairs. The markdown table (mean ± std over seeds) is
printed and written to ``benchmarks/results/<dataset>.md`` with the exact command; the raw
per-seed figures go to ``<dataset>.json`` beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from collections import defaultdict
from typing import Any

import numpy as np
import torch

from pairsift.benchmarks.embedding_cache import DEFAULT_CACHE_DIR, embed_source
from pairsift.benchmarks.noise_settings import Setting, add_edited_captions, check_modes
from pairsift.benchmarks.quality_runs import (
    RowResult,
    eval_rows,
    method_title,
    methods_for,
    run_jobs,
    with_changes,
)
from pairsift.models.config import PairsiftConfig

DEFAULT_PAIRS = {"synth": 3000}
DEFAULT_IMAGE_SIZE = {"synth": 96, "tuxpaint": 128, "fashion-mnist": 64}
_COST = {"ncr": 3, "pairsift": 2}  # rough relative cost, to start long jobs first
MODE_TITLES = {"caption": "caption shuffle", "image": "image shuffle",
               "neighbour": "near-miss caption", "partial": "partial (one word)",
               "mixed": "mixed (shuffle + near miss + partial)"}


def _floats(text: str) -> list[float]:
    values = [float(v) for v in text.split(",") if v.strip()]
    if not values or any(not 0.0 <= v <= 1.0 for v in values):
        raise argparse.ArgumentTypeError(f"noise rates must be in [0, 1], got {text!r}")
    return values


def _seeds(args: argparse.Namespace) -> range:
    first = getattr(args, "first_seed", 0) or 0
    return range(first, first + args.seeds)


def _words(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def _fmt(values: list[float | None], digits: int = 3, scale: float = 1.0) -> str:
    present = [v * scale for v in values if v is not None]
    if not present:
        return "–"
    mean = float(np.mean(present))
    if len(present) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {float(np.std(present)):.{digits}f}"


def _recalls(rows: list[RowResult], direction: str) -> str:
    return "/".join(f"{np.mean([r.recall_at[f'{direction}_r{k}'] for r in rows]):.1f}"
                    for k in (1, 5, 10))


def render_table(results: list[RowResult]) -> str:
    """One markdown table per setting; one row per method, mean ± std over seeds."""
    by_setting: dict[tuple[str, float], dict[str, list[RowResult]]] = defaultdict(
        lambda: defaultdict(list))
    for row in results:
        by_setting[(row.setting.mode, row.setting.rate)][row.method].append(row)
    lines: list[str] = []
    header = ("| method | detection AUC | loss AUC | kept precision | kept recall "
              "| est. / true noise | i2t R@1/5/10 | t2i R@1/5/10 | rSum | OUT/model rSum |")
    for (mode, rate), methods in by_setting.items():
        lines += [f"### {MODE_TITLES.get(mode, mode)}, {round(rate * 100)}% noise", "", header,
                  "|" + "---|" * 10]
        for method, rows in methods.items():
            est = _fmt([r.est_noise for r in rows], 2)
            true = _fmt([r.true_noise for r in rows], 2)
            lines.append(
                f"| {method_title(method)} | {_fmt([r.auc for r in rows])} "
                f"| {_fmt([r.loss_auc for r in rows])} "
                f"| {_fmt([r.precision for r in rows])} | {_fmt([r.recall for r in rows])} "
                f"| {est} / {true} | {_recalls(rows, 'i2t')} | {_recalls(rows, 't2i')} "
                f"| {_fmt([r.recall_at['rsum'] for r in rows], 1)} "
                f"| {_fmt([r.model_rsum for r in rows], 1)} |"
            )
        lines += ["", *_paired_lines(methods), *_component_lines(methods), ""]
    return "\n".join(lines)


def _component_lines(methods: dict[str, list[RowResult]]) -> list[str]:
    """Each component's gain, paired by seed, on detection AUC and OUT/model rSum: pairsift −
    its ablation for a component on by default, the addition − pairsift for one off by
    default (a gain whose interval excludes 0 is one these seeds support)."""
    from pairsift.benchmarks.paired import paired_difference

    full = methods.get("pairsift")
    if not full:
        return []
    out = []
    for method, rows in methods.items():
        if method[:1] not in "-+":  # "-x": x is on by default; "+x": off, added back
            continue
        for figure, digits, get in (("detection AUC", 3, lambda r: r.auc),
                                    ("OUT/model rSum", 1, lambda r: r.model_rsum)):
            with_x, without_x = (full, rows) if method[0] == "-" else (rows, full)
            found = paired_difference(
                {r.setting.seed: get(r) for r in with_x if get(r) is not None},
                {r.setting.seed: get(r) for r in without_x if get(r) is not None}, method)
            if found is not None:
                what = f"pairsift − {method}" if method[0] == "-" else f"{method} − pairsift"
                out.append(f"- component {method[1:]}: {what}, {figure}: "
                           f"{found.text(digits).rsplit(' against ', 1)[0]}")
    return out


def _paired_lines(methods: dict[str, list[RowResult]]) -> list[str]:
    """pairsift (and its OUT/model) against the best fair baseline, paired by seed."""
    from pairsift.benchmarks.paired import against_best

    out = []
    for ours in ("pairsift", "pairsift_filter"):
        for figure, digits, get in (("detection AUC", 3, lambda r: r.auc),
                                    ("rSum", 1, lambda r: r.recall_at.get("rsum"))):
            per_method = {m: {r.setting.seed: get(r) for r in rows if get(r) is not None}
                          for m, rows in methods.items()}
            found = against_best(per_method, ours)
            if found is not None:
                out.append(f"- {method_title(ours)} − best baseline, {figure}: {found.text(digits)}")
    return out


def bench_source(dataset: str, args: argparse.Namespace):
    from pairsift.benchmarks.datasets.cli import make_source

    if getattr(args, "data_dir", None):
        from pairsift.benchmarks.datasets.shards import ShardSource

        return ShardSource(args.data_dir, dataset, args.pairs)
    ns = argparse.Namespace(
        pairs=args.pairs or DEFAULT_PAIRS.get(dataset), seed=args.data_seed, root=None,
        image_size=None,
    )
    return make_source(dataset, ns)


def base_config(args: argparse.Namespace) -> PairsiftConfig:
    cfg = PairsiftConfig()
    if args.epochs is not None:
        cfg.train.epochs = args.epochs
    if args.warmup_epochs is not None:
        cfg.train.warmup_epochs = args.warmup_epochs
    return with_changes(cfg, parse_settings(getattr(args, "set", None) or []))


def parse_settings(items: list[str]) -> dict[str, dict[str, Any]]:
    """``section.key=value`` (value read as JSON, else kept as text) into config changes: a
    dev-seed sweep changes one constant of every method's base config."""
    changes: dict[str, dict[str, Any]] = defaultdict(dict)
    for item in items:
        name, sep, text = item.partition("=")
        section, dot, key = name.partition(".")
        if not sep or not dot:
            raise ValueError(f"--set takes section.key=value, got {item!r}")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        changes[section][key] = value
    return dict(changes)


def code_version() -> str:
    """The commit the figures come from, and whether models/ or pipeline/ differed from it."""
    if os.environ.get("PAIRSIFT_CODE_VERSION"):
        return os.environ["PAIRSIFT_CODE_VERSION"]
    import subprocess

    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "models", "pipeline"],
                               capture_output=True, text=True, check=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    changed = sorted(line[3:] for line in dirty.splitlines() if line[:2].strip())
    return head + (f" with uncommitted changes in {', '.join(changed)}" if changed else "")


def run_dataset(dataset: str, args: argparse.Namespace, command: str) -> str:
    """Why one piece: the benchmark's script for one dataset: embed, schedule the jobs, render and
    write the table.
    """
    started = time.perf_counter()
    version = code_version()  # at the start: edits made while it runs are not what it measured
    source = bench_source(dataset, args)
    image_size = args.image_size or DEFAULT_IMAGE_SIZE.get(dataset)
    langs = _words(args.langs) if args.langs else []
    print(f"[{dataset}] {len(source)} clean items; embedding (cached by content)...", flush=True)
    emb = embed_source(source, dataset, args.encoder, image_size, langs,
                       cache_dir=args.cache_dir, device=args.device,
                       progress=lambda line: print(f"[{dataset}] {line}", flush=True))
    print(f"[{dataset}] embedded {emb.embedded} new rows in {emb.seconds:.1f}s", flush=True)
    complete = emb.complete_rows()
    if len(complete) < len(emb.image):
        print(f"[{dataset}] {len(emb.image) - len(complete)} item(s) lack a caption in "
              f"{', '.join(langs)}: left out", flush=True)
        emb = emb.subset(complete)
    modes = _words(args.noise_mode)
    settings = [Setting(mode, rate, seed) for mode in modes
                for rate in _floats(args.noise) for seed in _seeds(args)]
    edited = add_edited_captions(emb, source, settings, args.encoder, image_size,
                                 args.cache_dir, args.device, source_rows=complete)
    if edited:
        print(f"[{dataset}] embedded {edited} partially edited caption(s)", flush=True)
    methods = methods_for(langs, _words(args.methods) if args.methods else None)
    jobs = [(s, m) for s in settings for m in methods]
    order = sorted(range(len(jobs)), key=lambda i: -_COST.get(
        jobs[i][1].lstrip("-+"), 2 if jobs[i][1][:1] in "-+" else 1))
    base = base_config(args)

    def report(row: RowResult, done: int, total: int) -> None:
        auc = "–" if row.auc is None else f"{row.auc:.3f}"
        print(f"[{dataset}] {done}/{total} {row.setting.label} seed {row.setting.seed} "
              f"{row.method}: AUC {auc} rSum {row.recall_at['rsum']:.1f} ({row.seconds:.1f}s)",
              flush=True)

    ordered = run_jobs(emb, [jobs[i] for i in order], base, args.workers, args.threads, report)
    results: list[RowResult] = [None] * len(jobs)  # type: ignore[list-item]
    for position, i in enumerate(order):
        results[i] = ordered[position]
    assert emb.splits is not None
    n_train, n_test = int((emb.splits == "train").sum()), len(eval_rows(emb))
    wall = time.perf_counter() - started
    lines = [
        f"# Quality benchmark: {dataset}",
        "",
        f"Command: `{command}`",
        "",
        f"- code: {version}",
        f"- seeds: {', '.join(str(s) for s in _seeds(args))} (noise plan and training); "
        f"data seed {args.data_seed}",
        f"- pairs: {n_train} train (noisy), {n_test} clean test items (one per distinct caption)",
        f"- encoder: `{args.encoder}` frozen towers, image size {image_size or 'native'}; "
        f"target languages: {', '.join(langs) or 'none'}",
        f"- training: epochs {base.train.epochs}, warm-up {base.train.warmup_epochs}, head dim "
        f"{base.train.head_dim}, batch {base.train.batch_size}; everything else the default "
        f"config{'' if not args.set else ' but ' + ', '.join(args.set)}",
        f"- embedding: {emb.embedded} rows embedded this run in {emb.seconds:.0f}s (rest cached); "
        f"wall time {wall:.0f}s on {os.cpu_count()} CPU core(s), {args.workers} worker(s) × "
        f"{args.threads} torch thread(s), {platform.machine()}, torch {torch.__version__}",
        "- detection AUC: ROC-AUC of the method's noise score on the noisy train pairs (1 − "
        "p_clean for division methods, −similarity for the CLIP-score filter, per-pair loss "
        "for methods that do not divide); loss AUC: the small-loss AUC under each method's final "
        "heads (diagnostic); kept precision/recall: share of kept pairs that are "
        "clean / share of clean pairs kept; est. noise: the fitted mixture's noisy weight for "
        "pairsift, the share labelled noisy for GMM/NCR; retrieval on the clean test split "
        "(rSum: the row's own heads; OUT/model rSum: the heads `pairsift run` ships, for "
        "pairsift and each ablation, which are judged on it)",
        "",
        render_table(results),
    ]
    markdown = "\n".join(lines)
    os.makedirs(args.out, exist_ok=True)
    stem = "-".join([dataset, *langs])  # tuxpaint-es: the multilingual table sits beside
    with open(os.path.join(args.out, f"{stem}.md"), "w", encoding="utf-8") as handle:
        handle.write(markdown + "\n")
    with open(os.path.join(args.out, f"{stem}.json"), "w", encoding="utf-8") as handle:
        json.dump({"command": command, "dataset": dataset, "wall_seconds": wall,
                   "rows": [r.to_dict() for r in results]}, handle, indent=1)
    return markdown


def command_line(bench: str) -> str:
    """The `pairsift bench <bench> ...` command this process runs, for the results' header."""
    argv = sys.argv[1:]
    while argv and argv[0] in ("-v", "--verbose"):
        argv = argv[1:]
    if argv[:2] == ["bench", bench]:
        argv = argv[2:]
    return " ".join([f"pairsift bench {bench}", *(shlex.quote(a) for a in argv)])


def run(args: argparse.Namespace) -> int:
    if args.threads is None:
        args.threads = max(1, (os.cpu_count() or 1) // max(args.workers, 1))
    command = command_line("quality")
    modes = _words(args.noise_mode)
    if not modes:
        raise ValueError("--noise-mode names no mode")
    check_modes(modes)
    _floats(args.noise)
    for dataset in _words(args.dataset):
        print(run_dataset(dataset, args, command), flush=True)
    return 0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "quality", help="detection AUC, kept precision/recall and retrieval vs baselines")
    parser.add_argument("--dataset", default="synth",
                        help="comma-separated: synth, tuxpaint, fashion-mnist")
    parser.add_argument("--noise", default="0.2,0.5,0.8", help="noise rates, comma-separated")
    parser.add_argument("--noise-mode", default="caption,image",
                        help="comma-separated: caption (NCR shuffle), image (DECL shuffle), "
                        "neighbour (near-miss caption), partial (one word changed), mixed")
    parser.add_argument("--seeds", type=int, default=1, help="K seeds per setting")
    parser.add_argument("--first-seed", type=int, default=0,
                        help="seeds FIRST..FIRST+K-1 (dev seeds 100.. tune, 0.. report)")
    parser.add_argument("--pairs", type=int, default=None, help="dataset size (synth: 3000)")
    parser.add_argument("--data-seed", type=int, default=0, help="seed of the synth scenes")
    parser.add_argument("--data-dir", default=None,
                        help="read the clean dataset from shards built by `pairsift data` "
                        "(one dataset) instead of its raw source")
    parser.add_argument("--methods", default=None, help="subset of methods (default: all)")
    parser.add_argument("--langs", default=None,
                        help="target languages for the dual-view / mutual-learning rows")
    parser.add_argument("--encoder", default="default", help="encoder spec (see models/encoders)")
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE",
                        help="change one constant of the base config (repeatable), e.g. "
                        "train.final_weight_power=1: for dev-seed sweeps")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--warmup-epochs", type=int, default=None)
    parser.add_argument("--device", default="cpu", help="device for embedding")
    parser.add_argument("--workers", type=int, default=1, help="parallel jobs (processes)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads per job (default: cores / workers)")
    parser.add_argument("--cache-dir", default=DEFAULT_CACHE_DIR)
    parser.add_argument("--out", default=os.path.join("benchmarks", "results"))
    parser.set_defaults(func=run)


if __name__ == "__main__":  # `python -m pairsift.benchmarks.quality ...` (no other commands)
    _parser = argparse.ArgumentParser(prog="pairsift bench quality")
    register(_parser.add_subparsers())
    _args = _parser.parse_args(["quality", *sys.argv[1:]])
    sys.exit(_args.func(_args))
