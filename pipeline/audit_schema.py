"""One Arrow schema for every audit and curated-parquet file of a run.

Rows of one shard differ in which columns they hold (an error row has no scores, a shard
without errors has an all-null ``error``), so per-file inferred schemas differ, and tools that
read ``OUT/audit/*.parquet`` as one table (duckdb, polars, Spark) refuse them, or a zero-row
file with no columns at all. Pass 2 therefore writes every file with the run's schema: the
audit's own columns with fixed types, plus whatever columns pass 1's rows and the score files
carry (the input's pass-through and per-language columns), typed from the first file that
holds a non-null value. It is computed on the driver from parquet footers only.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pyarrow.parquet as pq

from pairsift.models.records import AUDIT_COLUMNS, is_internal_column
from pairsift.models.storage.atomic import exists, filesystem
from pairsift.models.training.scoring import audited_columns

_STRING, _FLOAT, _INT = pa.string(), pa.float64(), pa.int64()
# the columns pass 2 itself writes, with their types (pass 1's rows add the input's own)
FIXED_TYPES: dict[str, pa.DataType] = {
    "key": _STRING, "source_shard": _STRING, "status": _STRING, "error": _STRING,
    "label": _STRING, "p_clean": _FLOAT, "uncertainty": _FLOAT, "soft_label": _FLOAT,
    "loss": _FLOAT, "similarity": _FLOAT, "consistency": _FLOAT,
    "translation_consistency": _FLOAT, "language": _STRING, "caption": _STRING,
    "width": _INT, "height": _INT, "sha256": _STRING, "index": _INT,
    "noise_kind_pred": _STRING, "input_key": _STRING, "reason": _STRING,
}


def _footer(path: str) -> pa.Schema | None:
    if not exists(path):
        return None
    fs, p = filesystem(path)
    with fs.open(p, "rb") as handle:
        return pq.read_schema(handle)


def _merge(found: dict[str, pa.DataType], name: str, kind: pa.DataType) -> None:
    """Keep the first non-null type of a column; two numeric types widen to float64 and any
    other clash is a string column (values are converted on write)."""
    if name in FIXED_TYPES or pa.types.is_null(kind):
        found.setdefault(name, pa.null())
        return
    have = found.get(name)
    if have is None or pa.types.is_null(have) or have == kind:
        found[name] = kind
    elif _numeric(have) and _numeric(kind):
        found[name] = _FLOAT
    else:
        found[name] = _STRING


def _numeric(kind: pa.DataType) -> bool:
    return pa.types.is_integer(kind) or pa.types.is_floating(kind)


def audit_schema(pass1_files: Iterable[str], score_files: Iterable[str],
                 target_langs: Iterable[str]) -> pa.Schema:
    """The run's audit schema: audit columns first (in their documented order), the rest
    sorted; a column that is null in every file is a string column."""
    langs = list(target_langs)
    with ThreadPoolExecutor(16) as pool:
        pass1 = list(pool.map(_footer, pass1_files))
        scores = list(pool.map(_footer, score_files))
    found: dict[str, pa.DataType] = {}
    for schema in filter(None, pass1):
        for name, kind in zip(schema.names, schema.types, strict=True):
            if not is_internal_column(name):
                _merge(found, name, kind)
    for schema in filter(None, scores):
        for name in audited_columns(schema.names, langs):
            found.setdefault(name, _FLOAT)
    for name in ("key", "source_shard", "status", "error", "label", "p_clean", "uncertainty",
                 "soft_label", "noise_kind_pred", "reason"):  # always there, if all null
        found.setdefault(name, FIXED_TYPES[name])
    for lang in langs:  # the per-language division (pass 2 writes them; null for untranslated)
        found.setdefault(f"label_{lang}", _STRING)
        found.setdefault(f"p_clean_{lang}", _FLOAT)
        found.setdefault(f"reason_{lang}", _STRING)
    if langs:
        found.setdefault("translations_dropped", _STRING)
    types = {n: FIXED_TYPES.get(n, t) for n, t in found.items()}
    types = {n: _STRING if pa.types.is_null(t) else t for n, t in types.items()}
    head = [c for c in AUDIT_COLUMNS if c in types]
    names = head + sorted(set(types) - set(head))
    return pa.schema([pa.field(n, types[n]) for n in names])


def without(schema: pa.Schema, *names: str) -> pa.Schema:
    return pa.schema([f for f in schema if f.name not in names])

