"""Readers for every input kind, through fsspec (local, gs://, s3:// alike).

``discover_shards(path)`` turns a user path into ``InputShard`` descriptors; ``read_shard``
streams ``PairSample`` records from one. Readers never raise on a bad sample: they yield a
sample whose ``error_status`` says why, so it reaches the audit.
"""

from __future__ import annotations

import csv
import json
import os
import posixpath
import re
import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from pairsift.models.records import PairSample, Status, sanitize_key
from pairsift.models.storage.atomic import filesystem

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff")
TABLE_EXTENSIONS = (".parquet", ".csv", ".jsonl", ".json")
FOLDER_CHUNK = 10_000
_BRACE = re.compile(r"\{(\d+)\.\.(\d+)\}")


@dataclass(frozen=True)
class InputShard:
    """One unit of parallel work: a tar, a table file, or a chunk of an image folder."""

    kind: str  # tar | table | folder
    path: str
    name: str  # used as source_shard and in per-shard output names
    start: int = 0
    stop: int = -1
    # what a table row may name: files under the table's folder and http(s)/gs/s3 URLs, or
    # (``allow_outside``) any path fsspec opens; and the most bytes read for one image
    allow_outside: bool = False
    max_image_bytes: int = 64 * 2**20


def expand_braces(pattern: str) -> list[str]:
    """`{00000..00099}.tar` → the 100 names (webdataset/img2dataset convention)."""
    match = _BRACE.search(pattern)
    if not match:
        return [pattern]
    lo, hi = match.group(1), match.group(2)
    width = len(lo)
    out: list[str] = []
    for i in range(int(lo), int(hi) + 1):
        out.extend(expand_braces(pattern[: match.start()] + str(i).zfill(width) + pattern[match.end() :]))
    return out


def _with_protocol(path: str, name: str) -> str:
    if "://" in path and "://" not in name:
        return path.split("://", 1)[0] + "://" + name
    return name


def _shard_name(path: str) -> str:
    base = posixpath.basename(path.rstrip("/"))
    return sanitize_key(base.split(".", 1)[0])


def discover_shards(path: str) -> list[InputShard]:
    """Every shard under ``path``, sorted by name, so a run's work list is deterministic.

    Why one piece: one ordered list of input kinds (brace pattern, single file, tars, tables,
    image folder); the order is the precedence, and split it would be hidden.
    """
    if _BRACE.search(path):
        return [InputShard("tar", p, _shard_name(p)) for p in expand_braces(path)]
    fs, root = filesystem(path)
    if not fs.exists(root):
        raise FileNotFoundError(f"input not found: {path}")
    if fs.isfile(root):
        return [_shard_for_file(path)]
    names = sorted(fs.ls(root, detail=False))
    tars = [n for n in names if n.endswith(".tar")]
    if tars:  # WebDataset tars or an img2dataset output folder (its parquet files are metadata)
        return [InputShard("tar", _with_protocol(path, n), _shard_name(n)) for n in tars]
    tables = [n for n in names if n.endswith(TABLE_EXTENSIONS) and not n.endswith("_stats.json")]
    if tables:
        return [InputShard("table", _with_protocol(path, n), _shard_name(n)) for n in tables]
    images = _folder_images(fs, root)
    if not images:
        raise ValueError(
            f"no input found in {path}: expected .tar shards, a parquet/csv/jsonl table, "
            "or image files with sidecar .txt captions"
        )
    return [
        InputShard("folder", path, f"{i // FOLDER_CHUNK:05d}", i, min(i + FOLDER_CHUNK, len(images)))
        for i in range(0, len(images), FOLDER_CHUNK)
    ]


def _shard_for_file(path: str) -> InputShard:
    if path.endswith(".tar"):
        return InputShard("tar", path, _shard_name(path))
    if path.endswith(TABLE_EXTENSIONS):
        return InputShard("table", path, _shard_name(path))
    raise ValueError(f"unsupported input file {path}: expected .tar, .parquet, .csv or .jsonl")


def _folder_images(fs: fsspec.AbstractFileSystem, root: str) -> list[str]:
    found = fs.find(root)
    return sorted(p for p in found if p.rsplit(".", 1)[-1].lower() in IMAGE_EXTENSIONS)


def read_shard(shard: InputShard) -> Iterator[PairSample]:
    if shard.kind == "tar":
        yield from _read_tar(shard)
    elif shard.kind == "table":
        yield from _read_table(shard)
    elif shard.kind == "folder":
        yield from _read_folder(shard)
    else:
        raise ValueError(f"unknown shard kind {shard.kind!r}")


# --- WebDataset tars -------------------------------------------------------------------


def _split_member(name: str) -> tuple[str, str]:
    """WebDataset convention: the key is the path up to the first dot of the basename."""
    directory, base = posixpath.split(name)
    stem, _, ext = base.partition(".")
    return posixpath.join(directory, stem), ext.lower()


def _unsafe_member(name: str) -> bool:
    return name.startswith("/") or ".." in name.split("/") or "\\" in name


def _read_tar(shard: InputShard) -> Iterator[PairSample]:
    builder = _SampleBuilder(shard.name)
    try:
        with fsspec.open(shard.path, "rb") as raw, tarfile.open(fileobj=raw, mode="r|*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                raw_key, ext = _split_member(member.name)
                if _unsafe_member(member.name):
                    yield from builder.flush()
                    yield builder.error(raw_key, Status.READ_ERROR, f"unsafe tar member path {member.name!r}")
                    continue
                if raw_key != builder.raw_key:
                    yield from builder.flush()
                    builder.start(raw_key)
                handle = tar.extractfile(member)
                builder.add(ext, handle.read() if handle else b"")
    except (tarfile.TarError, OSError, EOFError) as exc:
        yield from builder.flush()
        yield builder.error(
            f"{shard.name}_unreadable_{builder.index}",
            Status.READ_ERROR,
            f"tar unreadable after {builder.index} samples: {type(exc).__name__}: {exc}",
        )
        return
    yield from builder.flush()


class _SampleBuilder:
    """Collects consecutive tar members of one key into a ``PairSample``."""

    def __init__(self, shard_name: str) -> None:
        self.shard_name = shard_name
        self.index = 0
        self.raw_key: str | None = None
        self.files: dict[str, bytes] = {}
        self.seen: set[str] = set()

    def start(self, raw_key: str) -> None:
        self.raw_key, self.files = raw_key, {}

    def add(self, ext: str, data: bytes) -> None:
        self.files[ext] = data

    def _unique_key(self, raw_key: str) -> str:
        key = sanitize_key(raw_key)
        candidate, n = key, 1
        while candidate in self.seen:
            candidate, n = f"{key}_dup{n}", n + 1
        self.seen.add(candidate)
        return candidate

    def error(self, raw_key: str, status: Status, message: str) -> PairSample:
        sample = PairSample(self._unique_key(raw_key), self.shard_name, self.index)
        sample.error_status, sample.error = status.value, message
        self.index += 1
        return sample

    def flush(self) -> Iterator[PairSample]:
        if self.raw_key is None:
            return
        key = self._unique_key(self.raw_key)
        sample = PairSample(key, self.shard_name, self.index)
        self.index += 1
        self.raw_key = None
        files = self.files
        image_ext = next((e for e in IMAGE_EXTENSIONS if e in files), None)
        if image_ext is not None:
            sample.image_bytes, sample.image_format = files[image_ext], image_ext
        if "txt" in files:
            sample.caption = _decode_caption(files["txt"], sample)
        for ext, data in files.items():  # KEY.<lang>.txt translations shipped with the input
            if ext.endswith(".txt") and ext != "txt":
                sample.captions[ext[: -len(".txt")]] = data.decode("utf-8", errors="replace")
        if "json" in files:
            sample.meta = _scalar_meta(files["json"])
        if sample.error_status is None:
            if image_ext is None:
                sample.error_status, sample.error = Status.MISSING_IMAGE.value, f"no image member (have {sorted(files)})"
            elif "txt" not in files:
                sample.error_status, sample.error = Status.MISSING_CAPTION.value, "no .txt member"
        yield sample


def _decode_caption(data: bytes, sample: PairSample) -> str | None:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        sample.error_status, sample.error = Status.BAD_CAPTION.value, f"caption is not UTF-8: {exc}"
        return None


# Sidecar JSON fields worth carrying (ground truth and provenance); the rest stays in the source.
_META_FIELDS = ("is_noisy", "noise_kind", "url", "original_key", "split", "label", "true_caption_key")


def _scalar_meta(data: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return {}
    if not isinstance(obj, dict):
        return {}
    return {k: obj[k] for k in _META_FIELDS if k in obj and isinstance(obj[k], (str, int, float, bool))}


# --- parquet / CSV / JSONL tables ------------------------------------------------------

_CAPTION_COLUMNS = ("caption", "text", "txt", "title")
_IMAGE_COLUMNS = ("path", "image_path", "url", "file")


_BAD_ROW = "__pairsift_bad_row__"  # a row that could not be parsed: its reason


def _read_rows(path: str) -> list[dict[str, Any]]:
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq

        with fsspec.open(path, "rb") as handle:
            return pq.read_table(handle).to_pylist()
    if path.endswith(".csv"):
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


def _read_table(shard: InputShard) -> Iterator[PairSample]:
    """Why one piece: the per-row rules (key, caption, image, carried translations, missing
    columns) read top to bottom in the order they apply.
    """
    rows = _read_rows(shard.path)
    seen: set[str] = set()
    for index, row in enumerate(rows):
        raw_key = str(row.get("key") or f"{shard.name}_{index:09d}")
        key = sanitize_key(raw_key)
        if key in seen:
            key = f"{key}_dup{index}"
        seen.add(key)
        sample = PairSample(key, shard.name, index)
        if _BAD_ROW in row:
            sample.error_status, sample.error = Status.READ_ERROR.value, row[_BAD_ROW]
            yield sample
            continue
        caption_col = next((c for c in _CAPTION_COLUMNS if c in row), None)
        image_col = next((c for c in _IMAGE_COLUMNS if row.get(c)), None)
        sample.caption = None if caption_col is None or row[caption_col] is None else str(row[caption_col])
        sample.meta = {
            k: v for k, v in row.items()
            if k in _META_FIELDS and isinstance(v, (str, int, float, bool))
        }
        for column, value in row.items():
            if column.startswith("caption_") and isinstance(value, str):
                sample.captions[column[len("caption_") :]] = value
        if image_col is None:
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
        if isinstance(fs, LocalFileSystem) and not stat.S_ISREG(os.stat(path).st_mode):
            raise OSError(f"{location} is not a regular file")  # a FIFO or device would block
        with fs.open(path, "rb") as handle:
            data = handle.read(shard.max_image_bytes + 1)
        if len(data) > shard.max_image_bytes:
            raise ValueError(f"image over the {shard.max_image_bytes}-byte cap "
                             "(limits.max_image_bytes)")
        sample.image_bytes = data
        sample.image_format = location.rsplit(".", 1)[-1].lower()
    except ImportError as exc:  # a protocol whose client is not installed (http: aiohttp)
        sample.error_status = Status.READ_ERROR.value
        sample.error = f"cannot read image {location}: {exc}"
    except (OSError, ValueError, MemoryError) as exc:
        sample.error_status = Status.READ_ERROR.value
        sample.error = f"cannot read image {location}: {type(exc).__name__}: {exc}"


# --- folders of images with sidecar .txt ------------------------------------------------


def _escapes(fs: Any, root: str, path: str) -> bool:
    """Whether a local ``path`` resolves (through symlinks) outside the folder ``root``."""
    if not isinstance(fs, LocalFileSystem):
        return False
    real_root = os.path.realpath(root)
    return os.path.commonpath([real_root, os.path.realpath(path)]) != real_root


def _read_folder_file(fs: Any, root: str, path: str, shard: InputShard) -> bytes:
    """A file of the folder, refusing a symlink out of it and anything but a regular file."""
    if not shard.allow_outside and _escapes(fs, root, path):
        raise PermissionError("a symlink that leaves the input folder")
    if isinstance(fs, LocalFileSystem) and not stat.S_ISREG(os.stat(path).st_mode):
        raise OSError("not a regular file")
    with fs.open(path, "rb") as handle:
        data = handle.read(shard.max_image_bytes + 1)
    if len(data) > shard.max_image_bytes:
        raise OSError(f"over the {shard.max_image_bytes}-byte cap (limits.max_image_bytes)")
    return data


def _read_folder(shard: InputShard) -> Iterator[PairSample]:
    fs, root = filesystem(shard.path)
    images = _folder_images(fs, root)[shard.start : shard.stop]
    for offset, image_path in enumerate(images):
        rel = image_path[len(root) :].lstrip("/")
        sample = PairSample(sanitize_key(rel.rsplit(".", 1)[0]), shard.name, offset)
        sample.image_format = image_path.rsplit(".", 1)[-1].lower()
        caption_path = image_path.rsplit(".", 1)[0] + ".txt"
        try:
            sample.image_bytes = _read_folder_file(fs, root, image_path, shard)
        except PermissionError as exc:
            sample.error_status, sample.error = Status.UNSAFE_PATH.value, f"{rel}: {exc}"
        except OSError as exc:
            sample.error_status, sample.error = Status.READ_ERROR.value, f"cannot read {rel}: {exc}"
        if fs.exists(caption_path):
            try:
                caption = _read_folder_file(fs, root, caption_path, shard)
                sample.caption = _decode_caption(caption, sample)
            except PermissionError as exc:
                sample.caption = None
                if sample.error_status is None:
                    sample.error_status = Status.UNSAFE_PATH.value
                    sample.error = f"{rel.rsplit('.', 1)[0]}.txt: {exc}"
            except OSError as exc:
                if sample.error_status is None:
                    sample.error_status = Status.READ_ERROR.value
                    sample.error = f"cannot read the caption of {rel}: {exc}"
        elif sample.error_status is None:
            sample.error_status, sample.error = Status.MISSING_CAPTION.value, "no sidecar .txt"
        yield sample
