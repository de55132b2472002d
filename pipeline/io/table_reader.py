"""Parquet / CSV / JSONL tables of ``path`` or ``url`` and ``caption``, confined to the table's
folder and http(s)/gs/s3 URLs unless the shard allows more."""

from __future__ import annotations

import csv
import json
import logging
import posixpath
import re
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import fsspec

from pairsift.models.records import PairSample, Status
from pairsift.models.storage.atomic import filesystem
from pairsift.pipeline.io.fetch import FetchError, fetch_url
from pairsift.pipeline.io.img2dataset import apply_row, download_failure, files_folder, files_index
from pairsift.pipeline.io.shards import (
    InputShard,
    UniqueKeys,
    caption_over_cap,
    read_capped,
)
from pairsift.pipeline.io.table_columns import (
    KEY_ALIASES,
    TableColumns,
    TableColumnsError,
    find_column,
    resolve_columns,
)

LOG = logging.getLogger(__name__)


_BAD_ROW = "__pairsift_bad_row__"  # a row that could not be parsed: its reason


def _read_rows(path: str) -> list[dict[str, Any]]:
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq

        with fsspec.open(path, "rb") as handle:
            return pq.read_table(handle).to_pylist()
    if path.endswith(".csv"):
        # csv's default 128 KB field limit would fail the whole file on one long caption;
        # captions are capped per row instead (limits.max_caption_bytes)
        csv.field_size_limit(2**31 - 1)
        with fsspec.open(path, "r", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))
    with fsspec.open(path, "rb") as handle:
        return [_jsonl_row(number, line) for number, line in enumerate(handle, 1) if line.strip()]


def check_columns(tables: list[InputShard]) -> None:
    """Resolve the first readable table's columns from its head (parquet schema, CSV
    header, first JSONL lines), so a table with no image or caption column stops the run at
    once with one clear error rather than one error row per table. A table that cannot be
    read is left to the reader, which makes it a row."""
    for shard in tables:
        try:
            names = _head_columns(shard)
        except Exception:  # noqa: BLE001 - unreadable: its own read_error row later
            continue
        if names:
            resolve_columns(names, shard.column_choice)
            return


def _head_columns(shard: InputShard) -> list[str]:
    if shard.path.endswith(".parquet"):
        import pyarrow.parquet as pq

        with fsspec.open(shard.path, "rb") as handle:
            names = pq.read_schema(handle).names
    elif shard.path.endswith(".csv"):
        with fsspec.open(shard.path, "r", encoding="utf-8", errors="replace") as handle:
            names = next(csv.reader(handle), [])
    else:
        with fsspec.open(shard.path, "rb") as handle:
            head = [_jsonl_row(n, line) for n, line in zip(range(1, 101), handle, strict=False)
                    if line.strip()]
        names = _column_names(head)
    return names


def _jsonl_row(number: int, line: bytes) -> dict[str, Any]:
    """One JSONL line as a row; a line that is not a JSON object is a row that says why, so
    one broken line costs its own pair, not the file."""
    try:
        row = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError as exc:
        return {_BAD_ROW: f"line {number}: not UTF-8 ({exc.reason} at byte {exc.start})"}
    except ValueError as exc:
        return {_BAD_ROW: f"line {number}: not valid JSON ({exc})"[:300]}
    if not isinstance(row, dict):
        return {_BAD_ROW: f"line {number}: a JSON {type(row).__name__}, not an object"}
    return row


def _column_names(rows: list[dict[str, Any]]) -> list[str]:
    """Every column name in first-seen order (JSONL rows may differ in their keys)."""
    seen: dict[str, None] = {}
    for row in rows:
        if _BAD_ROW not in row:
            seen.update(dict.fromkeys(row))
    return list(seen)


def read_table_shard(shard: InputShard) -> Iterator[PairSample]:
    """The table's rows in order; URL rows download in a thread pool a window ahead of the
    row being yielded, so order (and so every byte of the output) does not depend on it."""
    rows = _read_rows(shard.path)
    names = _column_names(rows)
    try:
        columns = resolve_columns(names, shard.column_choice) if names else None
    except TableColumnsError as exc:  # every row stays in the audit, saying why
        yield from _unusable_rows(rows, shard, str(exc))
        return
    if columns is not None and columns.both_path_and_url:
        LOG.warning("%s has both %r and %r: reading %r where a row has it, %r otherwise "
                    "(--image-column picks one)", shard.path, columns.path, columns.url,
                    columns.path, columns.url)
    keys = UniqueKeys()
    files = _files_format(shard, columns)
    pending: deque[tuple[PairSample, Future | None]] = deque()
    with ThreadPoolExecutor(DOWNLOAD_THREADS, thread_name_prefix="download") as pool:
        for index, row in enumerate(rows):
            sample, location = _row_sample(row, index, columns, keys, shard, files)
            job = None
            if location is not None:
                job = pool.submit(_load_image, sample, location, shard)
            pending.append((sample, job))
            while len(pending) > DOWNLOAD_WINDOW:
                yield _finished(*pending.popleft())
        while pending:
            yield _finished(*pending.popleft())


def _unusable_rows(rows: list[dict[str, Any]], shard: InputShard, reason: str) -> Iterator[PairSample]:
    """One read_error row per row of a table whose columns cannot be read as pairs."""
    keys = UniqueKeys()
    key_column = find_column(_column_names(rows), KEY_ALIASES)
    for index, row in enumerate(rows):
        raw = row.get(key_column) if key_column else None
        raw = None if raw in (None, "") else raw
        sample = keys.sample(str(raw) if raw is not None else f"{shard.name}_{index:09d}", shard.name, index)
        sample.error_status, sample.error = Status.READ_ERROR.value, reason
        yield sample


DOWNLOAD_THREADS = 16
DOWNLOAD_WINDOW = 64


def _finished(sample: PairSample, job: Future | None) -> PairSample:
    if job is not None:
        job.result()  # _load_image records every failure on the sample
    return sample


def _files_format(shard: InputShard, columns: TableColumns | None) -> dict[str, str] | None:
    """img2dataset's files format: key → image path under the table's folder."""
    if columns is None or not columns.img2dataset or columns.image_bytes:
        return None
    folder = files_folder(shard.path)
    if folder is None:
        return None
    name = posixpath.basename(folder)
    return {key: f"{name}/{file}" for key, file in files_index(folder).items()}


def _row_sample(row: dict[str, Any], index: int, columns: TableColumns | None, keys: UniqueKeys,
                shard: InputShard, files: dict[str, str] | None = None
                ) -> tuple[PairSample, str | None]:
    """The row as a sample, and the image location still to read (None: nothing to read).

    Why one piece: the per-row rules (key, caption, pass-through, carried translations,
    img2dataset's verdict, image bytes or location) read top to bottom in the order they
    apply."""
    raw_key = row.get(columns.key) if columns is not None and columns.key else None
    sample = keys.sample(str(raw_key if raw_key not in (None, "") else f"{shard.name}_{index:09d}"),
                         shard.name, index)
    if columns is None or _BAD_ROW in row:
        sample.error_status, sample.error = Status.READ_ERROR.value, row.get(_BAD_ROW, "bad row")
        return sample, None
    value = row.get(columns.caption)
    sample.caption = None if value is None else str(value)
    apply_row(sample, row, columns)
    for lang, name in columns.translations.items():
        if isinstance(row.get(name), str):
            sample.captions[lang] = row[name]
    failed = download_failure(row) if columns.img2dataset else None
    if failed is not None:
        sample.error_status, sample.error = Status.DOWNLOAD_ERROR.value, failed
        return sample, None
    too_long = _caption_too_long(sample, shard.max_caption_bytes)
    if too_long is not None:
        sample.error_status, sample.error = Status.BAD_CAPTION.value, too_long
        return sample, None  # its image is not read either
    data = row.get(columns.image_bytes) if columns.image_bytes else None
    if isinstance(data, (bytes, bytearray)) and data:
        if len(data) > shard.max_image_bytes:
            sample.error_status = Status.READ_ERROR.value
            sample.error = f"image of {len(data)} bytes over the cap (limits.max_image_bytes)"
        else:
            sample.image_bytes, sample.image_format = bytes(data), columns.image_bytes.lower()
        return sample, None
    if files is not None:  # img2dataset's files format: the image it saved, never the URL
        location = files.get(str(raw_key))
        if location is None:
            sample.error_status = Status.MISSING_IMAGE.value
            sample.error = "img2dataset reports success, but its image file is not in the folder"
        return sample, location
    location = next((str(row[c]) for c in (columns.path, columns.url) if c and row.get(c)), None)
    if location is None:
        sample.error_status, sample.error = Status.MISSING_IMAGE.value, "row has no image path, url or bytes"
    return sample, location


REMOTE_SCHEMES = ("http", "https", "gs", "s3")


def unsafe_location(location: str) -> str | None:
    """Why a table row's image location may not be read by default, or None when it may: a
    relative path that stays under the table's folder, or an http(s)/gs/s3 URL."""
    if "::" in location:
        return "a chained fsspec URL"
    if "://" in location:
        scheme = location.split("://", 1)[0].lower()
        return None if scheme in REMOTE_SCHEMES else f"a {scheme}:// URL"
    if location.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:[\\/]", location):
        return "an absolute path"
    if ".." in re.split(r"[\\/]", location):
        return "a path that leaves the table's folder (..)"
    return None


def _caption_too_long(sample: PairSample, cap: int) -> str | None:
    """Why the row's caption or a carried translation is over the cap; such text is dropped
    from the sample (the audit would otherwise hold it whole)."""
    if sample.caption is not None:
        reason = caption_over_cap(sample.caption, cap)
        if reason is not None:
            sample.caption = None
            return reason
    for lang in sorted(sample.captions):
        reason = caption_over_cap(sample.captions[lang], cap)
        if reason is not None:
            del sample.captions[lang]
            return f"{lang}: {reason}"
    return None


def _load_image(sample: PairSample, location: str, shard: InputShard) -> None:
    """Read the row's image, within the shard's confinement and size cap; every failure is
    the sample's status and reason."""
    reason = None if shard.allow_outside else unsafe_location(location)
    if reason is not None:
        sample.error_status = Status.UNSAFE_PATH.value
        sample.error = (f"image location {location[:200]!r} is {reason}; tables may name files "
                        "under their folder or http(s)/gs/s3 URLs (--allow-paths-outside-input)")
        return
    if "://" not in location and not location.startswith("/"):
        location = posixpath.join(posixpath.dirname(shard.path), location)
    try:
        if location.lower().startswith(("http://", "https://")):
            sample.image_bytes = fetch_url(location, shard.max_image_bytes)
        else:
            fs, path = filesystem(location)
            sample.image_bytes = read_capped(fs, path, shard.max_image_bytes)
        sample.image_format = location.rsplit(".", 1)[-1].lower()[:8]
    except FetchError as exc:
        sample.error_status, sample.error = exc.status.value, f"{location[:300]}: {exc}"
    except ImportError as exc:  # a protocol whose client is not installed (gs: gcsfs)
        sample.error_status = Status.READ_ERROR.value
        sample.error = f"cannot read image {location}: {exc}"
    except Exception as exc:  # noqa: BLE001 - OSError, MemoryError, a backend's own errors
        sample.error_status = Status.READ_ERROR.value
        sample.error = f"cannot read image {location}: {type(exc).__name__}: {exc}"
