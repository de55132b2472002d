"""A shard's labels and audit as columns: pass 2 labels 10,000 pairs with list operations per column
instead of a dict per row (the row path cost pass 2 most of its time).

The values are the ones :func:`~pairsift.transforms.curate.finish_audit_row` gives row by row
(the same statuses, reasons and rounded scores), so the files are the same bytes; the row
path stays for inputs that are read again (tests compare the two).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa

from pairsift.models.config import PairsiftConfig
from pairsift.models.noise.fit import NoiseFit
from pairsift.models.records import Status, is_internal_column
from pairsift.models.storage.atomic import exists
from pairsift.models.storage.tables import ordered_columns, read_table, typed_array
from pairsift.models.training.scoring import audited_columns
from pairsift.pipeline.layout import RunLayout
from pairsift.transforms.curate import (
    UNSCORED_REASON,
    duplicate_error,
    label_scores,
    with_error_reasons,
)


@dataclass
class ShardLabels:
    """One shard's labelled pairs, by column: per scored row (its key, whether it is a
    duplicate), the audit's score columns and the noise fit's division (label, p_clean,
    soft_label, ...) as the audit stores them (rounded; None for a duplicate)."""

    keys: list[str]
    duplicate: np.ndarray
    values: dict[str, list[Any]]
    position: dict[str, int] = field(default_factory=dict)
    originals: dict[str, str] = field(default_factory=dict)  # duplicate key -> "shard/key" it copies

    def __post_init__(self) -> None:
        self.position = {key: i for i, key in enumerate(self.keys)}

    @classmethod
    def of(cls, layout: RunLayout, shard_name: str, fit: NoiseFit, cfg: PairsiftConfig) -> ShardLabels:
        """Label the shard's unique scored pairs with ``fit`` (pass 2, and any run that
        starts from embeddings, label through here)."""
        path = layout.scores_file(shard_name)
        table = read_table(path) if exists(path) else pa.table({"key": pa.array([], pa.string())})
        keys = table.column("key").to_pylist()
        if "duplicate" not in table.column_names:
            return cls(keys, np.zeros(len(keys), dtype=bool), {})
        originals = duplicate_originals(layout, shard_name)
        duplicate = np.asarray(table.column("duplicate").to_numpy(zero_copy_only=False), dtype=bool)
        unique = np.flatnonzero(~duplicate)
        names = [n for n in table.column_names if n not in ("key", "duplicate")]
        scores = {n: np.asarray(table.column(n).to_numpy(zero_copy_only=False), dtype=np.float64)[unique]
                  for n in names}
        columns = {n: scores[n] for n in audited_columns(names, cfg.translate.target_langs)}
        columns.update(label_scores(scores, fit, cfg.output))
        values: dict[str, list[Any]] = {}
        for name, column in columns.items():
            cells: list[Any] = [None] * len(keys)
            stored = _stored(name, column)
            for i, value in zip(unique.tolist(), stored, strict=True):
                cells[i] = value
            values[name] = cells
        return cls(keys, duplicate, values, originals=originals)

    def original_of(self, key: str) -> str | None:
        """The pair a duplicate copies ("shard/key"), where the dedup job recorded it."""
        return self.originals.get(key)

    def is_duplicate(self, key: str) -> bool:
        i = self.position.get(key)
        return i is not None and bool(self.duplicate[i])

    def scored(self, key: str) -> dict[str, Any] | None:
        """The audit's score and label values of a unique scored pair; None for any other."""
        i = self.position.get(key)
        if i is None or self.duplicate[i] or not self.values:
            return None
        return {name: cells[i] for name, cells in self.values.items()}


def _object_array(cells: list[Any]) -> np.ndarray:
    """``cells`` as a 1-d object array (numpy would nest a list of lists)."""
    out = np.empty(len(cells), dtype=object)
    out[:] = cells
    return out


def duplicate_originals(layout: RunLayout, shard_name: str) -> dict[str, str]:
    """Each duplicate of the shard → the pair it copies (the dedup job's side file; empty for
    a shard without duplicates, or one written before it recorded them)."""
    path = layout.duplicates_file(shard_name)
    if not exists(path):
        return {}
    table = read_table(path)
    if "duplicate_of" not in table.column_names:
        return {}
    return dict(zip(table.column("key").to_pylist(), table.column("duplicate_of").to_pylist(), strict=True))


def _stored(name: str, column: np.ndarray) -> list[Any]:
    """A label column's cells as the audit stores them: floats rounded, strings as they are,
    an empty per-language label or drop note as null (no such translation, nothing dropped)."""
    if column.dtype.kind != "U":  # clean_float's values, a column at a time
        values = np.asarray(column, dtype=np.float64)
        finite = np.isfinite(values)
        if finite.all():
            return [round(v, 6) for v in values.tolist()]
        return [round(v, 6) if ok else None for v, ok in zip(values.tolist(), finite.tolist(), strict=True)]
    if name.startswith(("label_", "reason")) or name in ("translations_dropped", "noise_kind_pred"):
        return [v or None for v in column.tolist()]
    return column.tolist()


@dataclass
class AuditColumns:
    """Column name → one value per input pair, in pass 1's order."""

    columns: dict[str, list[Any]]

    def __len__(self) -> int:
        return len(self.columns.get("key", ()))

    @classmethod
    def from_rows(cls, rows: list[dict[str, Any]]) -> AuditColumns:
        """The columns of audit rows built one by one (the path that reads a shard again)."""
        names = ordered_columns(rows) or ["key", "status", "label", "error"]
        return cls({name: [row.get(name) for row in rows] for name in names})

    @classmethod
    def label(cls, pass1: pa.Table, scored: ShardLabels) -> AuditColumns:
        """Pass 1's rows (less vectors and byte ranges) with each unique scored pair's
        scores and label; duplicates and unscored pairs get their status and reason."""
        n = pass1.num_rows
        columns = {name: pass1.column(name).to_pylist()
                   for name in pass1.column_names if not is_internal_column(name)}
        status = columns["status"]
        error = columns.setdefault("error", [None] * n)
        columns.setdefault("label", [None] * n)
        keys = columns["key"]
        found = np.fromiter((scored.position.get(k, -1) for k in keys), dtype=np.int64, count=n)
        ok = np.fromiter((s == Status.OK.value for s in status), dtype=bool, count=n)
        has = found >= 0
        duplicate = np.zeros(n, dtype=bool)
        duplicate[has] = scored.duplicate[found[has]]
        for i in np.flatnonzero(ok & duplicate).tolist():
            status[i], error[i] = Status.DUPLICATE.value, duplicate_error(scored.original_of(keys[i]))
        labelled = ok & has & ~duplicate if scored.values else np.zeros(n, dtype=bool)
        for i in np.flatnonzero(ok & ~duplicate & ~labelled).tolist():
            status[i], error[i] = Status.EMBED_ERROR.value, UNSCORED_REASON
        rows, picks = np.flatnonzero(labelled), found[labelled]
        for name, cells in scored.values.items():  # a column at a time, not a cell at a time
            column = _object_array(columns.get(name, [None] * n))
            column[rows] = _object_array(cells)[picks]
            columns[name] = column.tolist()
        return cls(columns)

    def rows_where(self, labels: set[str]) -> Iterator[int]:
        return (i for i, label in enumerate(self.columns["label"]) if label in labels)

    def fail(self, i: int, status: Status, error: str) -> None:
        self.columns["status"][i], self.columns["label"][i] = status.value, None
        self.columns["error"][i] = error

    def table(self, schema: pa.Schema) -> pa.Table:
        """As :func:`~pairsift.models.storage.tables.rows_to_table` with ``schema`` writes the
        same rows: the schema's columns typed, then any other column, inferred. Every
        unlabelled row's ``reason`` is its status and error."""
        n = len(self)
        c = self.columns
        c["reason"] = with_error_reasons(c.get("reason", [None] * n), c["status"],
                                         c.get("error", [None] * n), c.get("label", [None] * n))
        arrays = {f.name: typed_array(self.columns.get(f.name, [None] * n), f) for f in schema}
        table = pa.table(arrays, schema=schema)
        for name in ordered_columns([self.columns]):
            if name in schema.names:
                continue
            table = table.append_column(name, pa.array(self.columns[name]))
        return table

    def count_outcomes(self) -> None:
        """Beam counters per status and label, one increment per distinct outcome."""
        for status, count in Counter(self.columns["status"]).items():
            beam.metrics.Metrics.counter("pairsift", f"status_{status}").inc(count)
        for label, count in Counter(x for x in self.columns["label"] if x).items():
            beam.metrics.Metrics.counter("pairsift", f"label_{label}").inc(count)
