"""img2dataset's output folders, read whole: its parquet beside each shard is the source of
truth for the shard's rows.

img2dataset writes, per shard, ``NNNNN.parquet`` with one row per input URL (``key``, ``url``,
``caption``, ``status``, ``error_message``, ``width``, ``height``, ``original_width``,
``original_height``, ``exif``, ``sha256``, any ``--save_additional_columns``) next to the
images: ``NNNNN.tar`` (webdataset), a ``jpg`` column of that parquet (parquet) or a folder
``NNNNN/`` (files). Only successes have images, so a reader of the images alone loses every
failed download. Here each tar sample gets its parquet row's columns, and each row without
a sample becomes a ``download_error`` row with img2dataset's ``error_message``. The parquet
and files formats are tables (``table_reader``), whose rows already hold every row.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from typing import Any

from pairsift.models.records import PairSample, Status
from pairsift.models.storage.atomic import exists, filesystem
from pairsift.pipeline.io.shards import UniqueKeys
from pairsift.pipeline.io.table_columns import I2D_ERROR, I2D_STATUS, TableColumns, resolve_columns

SUCCESS = "success"


def sidecar_path(tar_path: str) -> str:
    base = tar_path
    for ext in (".tar.gz", ".tgz", ".tar"):
        if base.endswith(ext):
            base = base[: -len(ext)]
            break
    return base + ".parquet"


def read_sidecar(tar_path: str) -> tuple[list[dict[str, Any]], TableColumns] | None:
    """img2dataset's rows for a tar, or None when the tar has no such parquet beside it."""
    path = sidecar_path(tar_path)
    if not exists(path):
        return None
    import pyarrow.parquet as pq

    fs, p = filesystem(path)
    with fs.open(p, "rb") as handle:
        table = pq.read_table(handle)
    names = table.schema.names
    if not {I2D_STATUS, I2D_ERROR} <= {n.lower() for n in names}:
        return None
    return table.to_pylist(), resolve_columns(names)


def merge_sidecar(samples: Iterator[PairSample], tar_path: str, shard_name: str) -> Iterator[PairSample]:
    """The tar's samples with their img2dataset columns, then one ``download_error`` row per
    parquet row that has no sample (in the parquet's order)."""
    sidecar = read_sidecar(tar_path)
    if sidecar is None:
        yield from samples
        return
    rows, columns = sidecar
    by_key = {str(row[columns.key]): row for row in rows if columns.key and row.get(columns.key)}
    seen: set[str] = set()
    keys = UniqueKeys()
    index = 0
    for sample in samples:
        raw = sample.meta.get("input_key", sample.key)
        row = by_key.get(raw)
        if row is not None:
            seen.add(raw)
            apply_row(sample, row, columns)
        keys.seen.add(sample.key)
        index = sample.index + 1
        yield sample
    for key, row in by_key.items():
        if key in seen:
            continue
        sample = keys.sample(key, shard_name, index)
        index += 1
        apply_row(sample, row, columns)
        sample.caption = None if row.get(columns.caption) is None else str(row[columns.caption])
        sample.error_status = Status.DOWNLOAD_ERROR.value
        sample.error = download_failure(row) or "img2dataset reports success, but the shard has no image for it"
        yield sample


def download_failure(row: dict[str, Any]) -> str | None:
    """Why img2dataset's row has no image (its ``error_message``), or None where its status
    says success."""
    status = row.get(column_named(row, I2D_STATUS), SUCCESS)  # a row without one: success
    if str(status) == SUCCESS:
        return None
    return str(row.get(column_named(row, I2D_ERROR)) or f"img2dataset status {status!r}, not downloaded")


def apply_row(sample: PairSample, row: dict[str, Any], columns: TableColumns) -> None:
    """img2dataset's columns onto a sample: pass-through, and its hash of the original."""
    for name, target in columns.passthrough.items():
        if isinstance(row.get(name), (str, int, float, bool)):
            sample.meta[target] = row[name]
    if columns.original_sha256 and isinstance(row.get(columns.original_sha256), str):
        sample.original_sha256 = row[columns.original_sha256]


def column_named(row: dict[str, Any], lower_name: str) -> str:
    """The row's own spelling of a column, matched without regard to case."""
    return next((k for k in row if k.lower() == lower_name), lower_name)


def files_folder(table_path: str) -> str | None:
    """img2dataset's files format: the folder ``NNNNN/`` beside ``NNNNN.parquet``."""
    folder = posixpath.splitext(table_path)[0]
    fs, p = filesystem(folder)
    return folder if fs.isdir(p) else None


def files_index(folder: str) -> dict[str, str]:
    """Key → image file in an img2dataset files-format folder."""
    fs, p = filesystem(folder)
    out: dict[str, str] = {}
    for name in sorted(fs.ls(p, detail=False)):
        base = posixpath.basename(name)
        stem, _, ext = base.partition(".")
        if ext.lower() in ("jpg", "jpeg", "png", "webp"):
            out.setdefault(stem, base)
    return out
