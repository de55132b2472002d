"""Row dicts → parquet with a stable column order, embeddings as fixed-size float16 lists.

Rows of one shard differ in which keys they hold (an error row has no embedding, a pair
without a translation has no ``caption_pt``), so the schema is the union of all keys, with
the audit columns first and the rest sorted: the same rows always give the same file.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pairsift.models.records import AUDIT_COLUMNS, is_embedding_column
from pairsift.models.storage.atomic import atomic_open


def ordered_columns(rows: Sequence[dict[str, Any]], leading: Sequence[str] = AUDIT_COLUMNS) -> list[str]:
    present: set[str] = set()
    for row in rows:
        present.update(row)
    head = [c for c in leading if c in present]
    rest = sorted(present - set(head))
    return head + rest


def _embedding_array(values: list[Any]) -> pa.Array:
    dim = next((len(v) for v in values if v is not None), 0)
    for v in values:
        if v is not None and len(v) != dim:
            raise ValueError(f"embedding dims differ within a column: {len(v)} vs {dim}")
    cells = [None if v is None else np.asarray(v, dtype=np.float16) for v in values]
    return pa.array(cells, type=pa.list_(pa.float16(), dim))


def rows_to_table(rows: Sequence[dict[str, Any]], columns: Iterable[str] | None = None,
                  schema: pa.Schema | None = None, extra: bool = True) -> pa.Table:
    """Rows as a table: with ``schema``, its columns and types (zero rows included), and
    (``extra``) any column the rows hold beyond it after them, inferred."""
    if schema is not None:
        extra_names = [c for c in ordered_columns(rows) if c not in set(schema.names)] if extra else []
        table = pa.table({f.name: _typed(rows, f) for f in schema}, schema=schema)
        for name in extra_names:
            table = table.append_column(name, _column(rows, name))
        return table
    names = list(columns) if columns is not None else ordered_columns(rows)
    arrays = [_column(rows, name) for name in names]
    return pa.table(dict(zip(names, arrays, strict=True))) if names else pa.table({})


def _column(rows: Sequence[dict[str, Any]], name: str) -> pa.Array:
    values = [row.get(name) for row in rows]
    if is_embedding_column(name):
        return _embedding_array(values)
    return pa.array([_plain(v) for v in values])


def _typed(rows: Sequence[dict[str, Any]], field: pa.Field) -> pa.Array:
    return typed_array([row.get(field.name) for row in rows], field)


def typed_array(values: Sequence[Any], field: pa.Field) -> pa.Array:
    """One column's values as ``field``'s type (numpy scalars as Python values)."""
    try:  # the common case, in C: values arrow converts as they are
        return pa.array(values, type=field.type)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError):
        pass
    values = [_plain(v) for v in values]
    if pa.types.is_string(field.type):  # a column whose files disagreed on its type
        values = [v if v is None or isinstance(v, str) else str(v) for v in values]
    return pa.array(values, type=field.type)


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return value


def write_rows(path: str, rows: Sequence[dict[str, Any]], columns: Iterable[str] | None = None,
               schema: pa.Schema | None = None, extra: bool = True,
               row_group_size: int | None = None) -> None:
    """``row_group_size``: rows per parquet row group, so that :func:`read_rows` can read a
    few rows' vectors without the rest of the file (pass 1's embedding files)."""
    write_table(path, rows_to_table(rows, columns, schema, extra), row_group_size)


def write_table(path: str, table: pa.Table, row_group_size: int | None = None) -> None:
    """Atomically. Without the stored Arrow schema, a vector column reads back as a plain list
    of float16: pyarrow's reader refuses the null cells of a fixed-size list column (an error
    row, a pair without a translation), while a plain list holds them."""
    with atomic_open(path, "wb") as handle:
        pq.write_table(table, handle, row_group_size=row_group_size, store_schema=False)


def read_rows(path: str, rows: np.ndarray, columns: list[str] | None = None,
              embeddings_only: bool = False) -> pa.Table:
    """Rows ``rows`` (file positions, ascending) of a parquet file, reading only the row
    groups that hold them: the fit takes a sample's vectors without whole files.
    ``embeddings_only``: of ``columns`` (default: all), only the vector columns."""
    from pairsift.models.storage.atomic import filesystem

    rows = np.asarray(rows, dtype=np.int64)
    fs, p = filesystem(path)
    with fs.open(p, "rb") as handle:
        reader = pq.ParquetFile(handle)
        if embeddings_only:
            columns = [c for c in (columns or reader.schema_arrow.names) if is_embedding_column(c)]
        sizes = [reader.metadata.row_group(i).num_rows for i in range(reader.num_row_groups)]
        starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        group_of = np.searchsorted(starts, rows, side="right") - 1
        parts = []
        for group in np.unique(group_of):
            local = rows[group_of == group] - starts[group]
            table = reader.read_row_group(int(group), columns=columns)
            parts.append(table.take(pa.array(local)))
    if not parts:
        return pa.schema([]).empty_table() if columns is None else pa.table(
            {c: pa.array([]) for c in columns})
    return pa.concat_tables(parts)


def read_matching(path: str, column: str, value: str, columns: list[str] | None = None) -> pa.Table:
    """The rows of a parquet file whose string ``column`` equals ``value``, reading only the
    row groups whose statistics may hold it (a file sorted by ``column``: a few groups)."""
    import pyarrow.compute as pc

    from pairsift.models.storage.atomic import filesystem

    fs, p = filesystem(path)
    with fs.open(p, "rb") as handle:
        reader = pq.ParquetFile(handle)
        position = reader.schema_arrow.get_field_index(column)
        names = columns or reader.schema_arrow.names
        read = list(dict.fromkeys([*names, column]))
        parts = []
        for group in range(reader.num_row_groups):
            stats = reader.metadata.row_group(group).column(position).statistics
            if stats is not None and stats.has_min_max and not stats.min <= value <= stats.max:
                continue
            table = reader.read_row_group(group, columns=read)
            parts.append(table.filter(pc.equal(table.column(column), value)).select(names))
        if not parts:
            return reader.schema_arrow.empty_table().select(names)
    return pa.concat_tables(parts)


def read_table(
    path: str, columns: list[str] | None = None, skip_embeddings: bool = False
) -> pa.Table:
    """Read a parquet file as Arrow (``skip_embeddings``: leave the vector columns undecoded).

    Goes through polars: pyarrow's own parquet reader rejects null entries in fixed-size
    list columns ("Expected all lists to be of size=N"), which our error rows have.
    """
    import polars as pl

    from pairsift.models.storage.atomic import filesystem

    fs, p = filesystem(path)
    with fs.open(p, "rb") as handle:
        data = handle.read()
    names = pq.read_schema(pa.BufferReader(data)).names
    wanted = None if columns is None else [c for c in columns if c in names]
    if skip_embeddings:
        wanted = [c for c in (wanted or names) if not is_embedding_column(c)]
    frame = pl.read_parquet(data, columns=wanted)
    return frame.to_arrow(compat_level=pl.CompatLevel.oldest())


def embedding_matrix(table: pa.Table, column: str, fill_null: bool = False) -> np.ndarray:
    """A vector column (fixed-size or plain list) → [n, dim] float32. Null rows raise, or
    become zeros with ``fill_null`` (the caller then masks them with ``column.is_null()``)."""
    import pyarrow.compute as pc

    col = table.column(column)
    if col.null_count and not fill_null:
        raise ValueError(f"column {column} has {col.null_count} null embeddings")
    valid = ~np.asarray(col.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    flat = pc.list_flatten(col).to_numpy(zero_copy_only=False)
    dim = flat.size // max(int(valid.sum()), 1)
    if pa.types.is_fixed_size_list(col.type):
        dim = col.type.list_size
    if flat.size != dim * int(valid.sum()):
        raise ValueError(f"embedding dims differ within column {column}")
    out = np.zeros((len(col), dim), dtype=np.float32)
    out[valid] = flat.reshape(-1, dim)
    return out
