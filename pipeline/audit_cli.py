"""`pairsift audit OUT`: the questions a reviewer asks of a finished run's audit.

- ``--key K``: one pair's whole row, its reason last;
- ``--label noisy --sort p_clean --limit 20``, ``--status decode_error``: a selection,
  ``--lang pt`` to ask about a language's own translation labels instead;
- ``--html FILE``: the selection as a gallery of thumbnails with reasons;
- ``--format json``: machine-readable output.

The audit is read file by file through fsspec (local, gs://, s3://) with polars, keeping only
the best ``--limit`` rows so far, so memory stays flat however large the run.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from pairsift.models.records import KEPT_LABELS, Label, Status
from pairsift.models.storage.atomic import atomic_open, exists, filesystem, list_files
from pairsift.pipeline.layout import RunLayout

LIST_COLUMNS = ("source_shard", "key", "status", "label", "p_clean", "uncertainty", "reason")
LABELS = tuple(label.value for label in Label) + ("kept",)


@dataclass
class AuditQuery:
    """Which audit rows to show, in what order, how many."""

    key: str | None = None
    shard: str | None = None
    labels: list[str] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    lang: str | None = None
    sort: str | None = None
    descending: bool = False
    limit: int | None = 20

    @property
    def label_column(self) -> str:
        return f"label_{self.lang}" if self.lang else "label"

    def wanted_labels(self) -> list[str]:
        out: list[str] = []
        for label in self.labels:
            out.extend(KEPT_LABELS if label == "kept" else [label])
        return out

    def filter_columns(self) -> list[str]:
        """The columns :meth:`keep` reads (to count matches without reading whole rows)."""
        return ["key", "input_key", "source_shard", "status", self.label_column]

    def keep(self, frame: pl.DataFrame) -> pl.DataFrame:
        """The rows of one audit file this query selects."""
        if self.key is not None:
            frame = frame.filter((pl.col("key") == self.key) | _input_key_is(frame, self.key))
        if self.shard is not None:
            frame = frame.filter(pl.col("source_shard") == self.shard)
        if self.statuses:
            frame = frame.filter(pl.col("status").is_in(self.statuses))
        if self.labels:
            frame = frame.filter(pl.col(self.label_column).is_in(self.wanted_labels()))
        return frame


def _input_key_is(frame: pl.DataFrame, key: str) -> pl.Expr:
    """A pair asked for by the key its input spelled (``input_key``) is found too."""
    return pl.col("input_key") == key if "input_key" in frame.columns else pl.lit(False)


def read_audit_file(path: str, columns: list[str] | None = None) -> pl.DataFrame:
    """One audit file (``columns``: only those it has of them)."""
    fs, p = filesystem(path)
    with fs.open(p, "rb") as handle:
        data = handle.read()
    if columns is not None:
        have = set(pl.read_parquet_schema(data))
        columns = [c for c in columns if c in have]
    return pl.read_parquet(data, columns=columns)


def check_columns(query: AuditQuery, columns: list[str]) -> None:
    """An unknown --sort column or --lang is one clear error naming the closest valid one."""
    if query.lang and query.label_column not in columns:
        labelled = sorted(c.removeprefix("label_") for c in columns if c.startswith("label_"))
        raise SystemExit(f"this run labelled no {query.lang!r} translations (pairsift run "
                         f"--langs {query.lang} does); labelled languages: "
                         f"{', '.join(labelled) or 'none'}")
    if query.sort and query.sort not in columns:
        raise SystemExit(f"the audit has no column {query.sort!r}{_hint(query.sort, columns)}")


def run_query(out: str, query: AuditQuery) -> tuple[pl.DataFrame, int]:
    """The selected rows (sorted and cut to ``limit``) and how many rows matched in all."""
    files = list_files(RunLayout(out).audit, ".parquet")
    if not files:
        raise SystemExit(f"no audit files under {RunLayout(out).audit}: is {out} a finished run?")
    best: pl.DataFrame | None = None
    matched = 0
    for path in files:
        full = best is None or query.sort is not None or query.limit is None \
            or best.height < query.limit
        frame = read_audit_file(path, None if full else query.filter_columns())
        if best is None:
            check_columns(query, frame.columns)
        chosen = query.keep(frame)
        matched += chosen.height
        if full:  # in input order, once the first rows fill the limit the rest are only counted
            best = chosen if best is None else pl.concat([best, chosen], how="diagonal_relaxed")
            best = _trim(best, query)
    assert best is not None
    return best, matched


def _trim(frame: pl.DataFrame, query: AuditQuery) -> pl.DataFrame:
    if query.sort is not None:
        frame = frame.sort([query.sort, "source_shard", "key"], descending=[query.descending, False, False],
                           nulls_last=True)
    return frame if query.limit is None else frame.head(query.limit)


def format_row(row: dict[str, Any]) -> str:
    """One pair, a line a column (nulls left out), its reason last."""
    names = [n for n in row if n != "reason" and row[n] is not None]
    width = max((len(n) for n in names), default=0)
    lines = [f"{n.ljust(width)}  {_short(row[n])}" for n in names]
    lines.append(f"{'reason'.ljust(width)}  {row.get('reason') or ''}")
    return "\n".join(lines)


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list):
        return f"[{len(value)} values]"
    return str(value)


def format_table(frame: pl.DataFrame, query: AuditQuery) -> str:
    columns = list(LIST_COLUMNS)
    if query.lang:
        columns[3:4] = ["label", query.label_column, f"p_clean_{query.lang}"]
        columns.append(f"reason_{query.lang}")
    if query.sort and query.sort not in columns:
        columns.insert(4, query.sort)
    if query.statuses:
        columns.append("error")
    shown = frame.select([c for c in columns if c in frame.columns])
    with pl.Config(tbl_rows=-1, tbl_cols=-1, fmt_str_lengths=120, tbl_width_chars=240,
                   tbl_hide_dataframe_shape=True, tbl_formatting="ASCII_MARKDOWN"):
        return str(shown)


def write_html(out: str, frame: pl.DataFrame, query: AuditQuery, html_path: str) -> None:
    """The selection as a self-contained gallery page (thumbnails read once per shard)."""
    from pairsift.pipeline.report.page import Page, Section, gallery
    from pairsift.pipeline.report.thumbnails import thumbnails

    rows = frame.to_dicts()
    thumbs = thumbnails(RunLayout(out), {(str(r["source_shard"]), str(r["key"])) for r in rows})
    title = describe(query)
    count = f"{len(rows):,} pair{'' if len(rows) == 1 else 's'}"
    page = Page(f"pairsift audit: {title}", f"{count} of the run in <code>{out}</code>.")
    page.sections = [Section(title, "Each card: thumbnail, caption, label, p_clean, uncertainty "
                             "and the reason (for a labelled pair the rule of the division that "
                             "decided it; otherwise the status and error).",
                             gallery(rows, thumbs, query.lang))]
    with atomic_open(html_path, "w") as handle:
        handle.write(page.render())


def describe(query: AuditQuery) -> str:
    parts = [f"key {query.key}"] if query.key else []
    if query.labels:
        parts.append(f"{query.label_column} in {', '.join(query.labels)}")
    if query.statuses:
        parts.append(f"status in {', '.join(query.statuses)}")
    if query.sort:
        parts.append(f"by {query.sort}{' (descending)' if query.descending else ''}")
    return "; ".join(parts) or "all pairs"


def _hint(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _names(text: str | None, valid: tuple[str, ...], what: str) -> list[str]:
    names = [n.strip() for n in (text or "").split(",") if n.strip()]
    for name in names:
        if name not in valid:
            raise SystemExit(f"unknown {what} {name!r}{_hint(name, valid)} (one of {', '.join(valid)})")
    return names


def query_of(args: argparse.Namespace) -> AuditQuery:
    """The query the flags ask for, after the checks a mistyped command fails."""
    if not exists(args.out):
        raise SystemExit(f"{args.out} does not exist: give the OUT folder of a pairsift run")
    if not exists(RunLayout(args.out).audit):
        raise SystemExit(f"{args.out} has no audit/ folder: give the OUT folder of a pairsift run")
    if args.key is not None and (args.label or args.status or args.sort):
        raise SystemExit("--key prints one pair whatever its label or status: leave out "
                         "--label, --status and --sort (--shard picks among pairs sharing a key)")
    return AuditQuery(
        key=args.key, shard=args.shard, labels=_names(args.label, LABELS, "label"),
        statuses=_names(args.status, tuple(s.value for s in Status), "status"), lang=args.lang,
        sort=args.sort, descending=args.desc, limit=None if args.key else args.limit,
    )


def audit_command(args: argparse.Namespace) -> int:
    query = query_of(args)
    frame, matched = run_query(args.out, query)
    if args.key is not None and frame.height == 0:
        where = f" in shard {args.shard!r}" if args.shard else ""
        raise SystemExit(f"no pair with key {args.key!r}{where} in {args.out}")
    if args.html:
        write_html(args.out, frame, query, args.html)
        print(f"wrote {args.html}: {frame.height:,} of {matched:,} matching pairs", file=sys.stderr)
    if args.format == "json":
        print(json.dumps(frame.to_dicts(), default=str, ensure_ascii=False, indent=1))
    elif args.key is not None:
        if frame.height > 1:
            print(f"{frame.height} pairs have key {args.key!r} (--shard picks one):\n")
        print("\n\n".join(format_row(row) for row in frame.to_dicts()))
    elif not args.html:
        print(format_table(frame, query))
        print(f"{frame.height:,} of {matched:,} matching pairs ({describe(query)})", file=sys.stderr)
    return 0


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("audit", help="ask a finished run's audit why pairs were kept or dropped",
                                   description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("out", help="the OUT folder of a pairsift run (local, gs:// or s3://)")
    parser.add_argument("--key", help="one pair's whole audit row and its reason")
    parser.add_argument("--label", help=f"only these labels, comma-separated ({', '.join(LABELS)})")
    parser.add_argument("--status", help="only these statuses, comma-separated (e.g. decode_error)")
    parser.add_argument("--lang", help="ask about this target language's own labels (label_<lang>)")
    parser.add_argument("--sort", help="sort by this audit column (e.g. p_clean, uncertainty, loss)")
    parser.add_argument("--desc", action="store_true", help="sort in descending order")
    parser.add_argument("--shard", help="only pairs of this input shard (source_shard)")
    parser.add_argument("--limit", type=positive, default=20, help="at most this many rows (default 20)")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.add_argument("--html", metavar="FILE", help="write the selection as a gallery page")
    parser.set_defaults(func=audit_command)
