"""Parquet / CSV / JSONL tables of ``path`` or ``url`` and ``caption``, confined to the table's
folder and http(s)/gs/s3 URLs unless the shard allows more."""

from __future__ import annotations

import csv
import json
import posixpath
import re
from collections.abc import Iterator
from typing import Any

import fsspec

from pairsift.models.records import PairSample, Status
from pairsift.models.storage.atomic import filesystem
from pairsift.pipeline.io.shards import (
    META_FIELDS,
    InputShard,
    UniqueKeys,
    caption_over_cap,
    read_capped,
)

_CAPTION_COLUMNS = ("caption", "text", "txt", "title")
_IMAGE_COLUMNS = ("path", "image_path", "url", "file")


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


def read_table_shard(shard: InputShard) -> Iterator[PairSample]:
    """Why one piece: the per-row rules (key, caption, image, carried translations, missing
    columns) read top to bottom in the order they apply.
    """
    rows = _read_rows(shard.path)
    keys = UniqueKeys()
    for index, row in enumerate(rows):
        sample = keys.sample(str(row.get("key") or f"{shard.name}_{index:09d}"), shard.name, index)
        if _BAD_ROW in row:
            sample.error_status, sample.error = Status.READ_ERROR.value, row[_BAD_ROW]
            yield sample
            continue
        caption_col = next((c for c in _CAPTION_COLUMNS if c in row), None)
        image_col = next((c for c in _IMAGE_COLUMNS if row.get(c)), None)
        sample.caption = None if caption_col is None or row[caption_col] is None else str(row[caption_col])
        sample.meta.update({
            k: v for k, v in row.items()
            if k in META_FIELDS and isinstance(v, (str, int, float, bool))
        })
        for column, value in row.items():
            if column.startswith("caption_") and isinstance(value, str):
                sample.captions[column[len("caption_") :]] = value
        too_long = _caption_too_long(sample, shard.max_caption_bytes)
        if too_long is not None:
            sample.error_status, sample.error = Status.BAD_CAPTION.value, too_long
        if sample.error_status is not None:
            pass  # a caption over the cap: its image is not read either
        elif image_col is None:
            sample.error_status, sample.error = Status.MISSING_IMAGE.value, "row has no path/url"
        else:
            _load_image(sample, str(row[image_col]), shard)
        if caption_col is None and sample.error_status is None:
            sample.error_status, sample.error = Status.MISSING_CAPTION.value, "row has no caption column"
        yield sample


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
        fs, path = filesystem(location)
        sample.image_bytes = read_capped(fs, path, shard.max_image_bytes)
        sample.image_format = location.rsplit(".", 1)[-1].lower()
    except ImportError as exc:  # a protocol whose client is not installed (http: aiohttp)
        sample.error_status = Status.READ_ERROR.value
        sample.error = f"cannot read image {location}: {exc}"
    except Exception as exc:  # noqa: BLE001 - OSError, MemoryError, a backend's own errors
        sample.error_status = Status.READ_ERROR.value
        sample.error = f"cannot read image {location}: {type(exc).__name__}: {exc}"
