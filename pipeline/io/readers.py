"""Readers for every input kind, through fsspec (local, gs://, s3:// alike).

``discover_shards(path)`` turns a user path into ``InputShard`` descriptors; ``read_shard``
streams ``PairSample`` records from one. Readers never raise on a bad sample: they yield a
sample whose ``error_status`` says why, so it reaches the audit.
"""

from __future__ import annotations

import dataclasses
import posixpath
import re
import tarfile
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import fsspec

from pairsift.models.records import PairSample, Status, sanitize_key
from pairsift.models.storage.atomic import filesystem
from pairsift.pipeline.io.folder_reader import folder_images, read_folder_shard
from pairsift.pipeline.io.img2dataset import merge_sidecar
from pairsift.pipeline.io.shards import (
    FOLDER_CHUNK,
    IMAGE_EXTENSIONS,
    TABLE_EXTENSIONS,
    TAR_EXTENSIONS,
    InputShard,
    UniqueKeys,
    decode_caption,
    number_repeats,
    scalar_meta,
)
from pairsift.pipeline.io.table_reader import read_table_shard
from pairsift.pipeline.io.tar_stream import iter_members, read_data

__all__ = ["InputShard", "discover_shards", "expand_braces", "read_shard"]

_BRACE = re.compile(r"\{(\d+)\.\.(\d+)\}")


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
    """The file's name less its input extension, as a key (``x.b.tar`` → ``x_b``, so it and
    ``x.tar`` stay two shards)."""
    base = posixpath.basename(path.rstrip("/"))
    for ext in sorted((*TAR_EXTENSIONS, *TABLE_EXTENSIONS), key=len, reverse=True):
        if base.endswith(ext):
            base = base[: -len(ext)]
            break
    return sanitize_key(base)


def _unique_names(shards: list[InputShard]) -> list[InputShard]:
    """Shard names are audit ``source_shard`` values and output names: two files whose names
    sanitise alike (``a b.tar``, ``a_b.tar``) get ``_2``, ``_3``... in sorted order."""
    names = number_repeats([s.name for s in shards])
    return [dataclasses.replace(s, name=n) if n != s.name else s for s, n in zip(shards, names, strict=True)]


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
    tars = [n for n in names if n.endswith(TAR_EXTENSIONS)]
    if tars:  # WebDataset tars or an img2dataset output folder (its parquet files are metadata)
        return _unique_names([InputShard("tar", _with_protocol(path, n), _shard_name(n))
                              for n in tars])
    tables = [n for n in names if n.endswith(TABLE_EXTENSIONS) and not n.endswith("_stats.json")]
    if tables:
        return _unique_names([InputShard("table", _with_protocol(path, n), _shard_name(n))
                              for n in tables])
    images = folder_images(fs, root)
    if not images:
        raise ValueError(
            f"no input found in {path}: expected .tar shards, a parquet/csv/jsonl table, "
            "or image files with sidecar .txt captions"
            + ("; it holds img_emb/: precomputed embeddings go to --embeddings"
               if fs.exists(f"{root}/img_emb") else "")
        )
    return [
        InputShard("folder", path, f"{i // FOLDER_CHUNK:05d}", i, min(i + FOLDER_CHUNK, len(images)))
        for i in range(0, len(images), FOLDER_CHUNK)
    ]


def _shard_for_file(path: str) -> InputShard:
    if path.endswith(TAR_EXTENSIONS):
        return InputShard("tar", path, _shard_name(path))
    if path.endswith(TABLE_EXTENSIONS):
        return InputShard("table", path, _shard_name(path))
    raise ValueError(f"unsupported input file {path}: expected .tar, .tar.gz, .tgz, .parquet, "
                     ".csv, .jsonl or .json")




def read_shard(shard: InputShard) -> Iterator[PairSample]:
    """The shard's samples. Whatever a reader raises past its own per-sample handling (a
    table file that is not parquet, a listing that fails, MemoryError) ends the shard with one
    ``read_error`` row saying how far it got: the pairs read so far keep their rows, and the
    run goes on with the other shards."""
    readers = {"tar": _read_tar_whole, "table": read_table_shard, "folder": read_folder_shard}
    if shard.kind not in readers:
        raise ValueError(f"unknown shard kind {shard.kind!r}")
    count = 0
    try:
        for sample in readers[shard.kind](shard):
            count = sample.index + 1
            yield sample
    except Exception as exc:  # noqa: BLE001 - the reason goes to the audit
        yield unreadable_row(shard.name, count, exc)


def unreadable_row(shard_name: str, count: int, exc: BaseException) -> PairSample:
    """The row that stands for the rest of a shard that could not be read past ``count``."""
    sample = PairSample(f"{shard_name}_unreadable_{count}", shard_name, count)
    sample.error_status = Status.READ_ERROR.value
    sample.error = f"shard unreadable after {count} samples: {type(exc).__name__}: {exc}"[:1000]
    return sample


# --- WebDataset tars -------------------------------------------------------------------


def _split_member(name: str) -> tuple[str, str]:
    """WebDataset convention: the key is the path up to the first dot of the basename."""
    directory, base = posixpath.split(name)
    stem, _, ext = base.partition(".")
    return posixpath.join(directory, stem), ext.lower()


def _unsafe_member(name: str) -> bool:
    return name.startswith("/") or ".." in name.split("/") or "\\" in name


def _member_cap(ext: str, shard: InputShard) -> tuple[int, str]:
    """The most bytes read for a member: captions and sidecars have their own, smaller cap."""
    if ext == "txt" or ext.endswith(".txt") or ext == "json":
        return shard.max_caption_bytes, "limits.max_caption_bytes"
    return shard.max_image_bytes, "limits.max_image_bytes"


def _read_tar_whole(shard: InputShard) -> Iterator[PairSample]:
    """A tar's samples, and, in an img2dataset output, the rows its parquet has beside them."""
    return merge_sidecar(_read_tar(shard), shard.path, shard.name)


def byte_ranged(shard: InputShard) -> bool:
    """Whether a member's data offset in the tar stream is its offset in the file: an
    uncompressed tar, whose kept images pass 2 copies by byte range."""
    return shard.kind == "tar" and shard.path.endswith(".tar")


def keeps_image_copy(shard: InputShard) -> bool:
    """Whether pass 1 keeps a copy of the shard's embedded images for pass 2 (OUT/images):
    a table's rows name URLs or files that pass 2 would otherwise fetch or open again."""
    return shard.kind == "table"


def _members(raw: Any, shard: InputShard) -> Iterator[tuple[Any, Callable[[], bytes]]]:
    """Each member (name, size, offset_data, isfile(), isdir()) with a reader of its data:
    an uncompressed tar by the fast header parser, any other through ``tarfile``."""
    if byte_ranged(shard):
        for member, reader in iter_members(raw):
            yield member, partial(read_data, member, reader)
        return
    with tarfile.open(fileobj=raw, mode="r|*") as tar:
        for member in tar:
            yield member, partial(_extracted, tar, member)


def _extracted(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    handle = tar.extractfile(member)
    return handle.read() if handle else b""


def _read_tar(shard: InputShard) -> Iterator[PairSample]:
    builder = _SampleBuilder(shard.name, ranged=byte_ranged(shard))
    try:
        with fsspec.open(shard.path, "rb") as raw:
            unsafe: set[str] = set()  # keys already reported: one row per unsafe pair
            for member, data in _members(raw, shard):
                if member.isdir():
                    continue
                raw_key, ext = _split_member(member.name)
                if _unsafe_member(member.name):
                    if raw_key not in unsafe:
                        unsafe.add(raw_key)
                        yield from builder.flush()
                        yield builder.error(raw_key, Status.READ_ERROR,
                                            f"unsafe tar member path {member.name!r}")
                    continue
                if raw_key != builder.raw_key:
                    yield from builder.flush()
                    builder.start(raw_key)
                if not member.isfile():  # a link, FIFO or device: never followed or read
                    builder.skipped.append(member.name)
                    continue
                cap, setting = _member_cap(ext, shard)
                if member.size > cap:  # from the header: never read in
                    builder.oversize.append((setting, f"{member.name} ({member.size} bytes > {setting})"))
                    continue
                builder.add(ext, data(), member.offset_data)
    except Exception as exc:  # noqa: BLE001 - a cut or corrupt tar: keep what was read
        yield from builder.flush()
        yield unreadable_row(shard.name, builder.index, exc)
        return
    yield from builder.flush()


class _SampleBuilder:
    """Collects consecutive tar members of one key into a ``PairSample``."""

    def __init__(self, shard_name: str, ranged: bool = False) -> None:
        self.shard_name = shard_name
        self.ranged = ranged  # offsets are file offsets (an uncompressed tar)
        self.index = 0
        self.raw_key: str | None = None
        self.files: dict[str, bytes] = {}
        self.offsets: dict[str, int] = {}  # each member's data offset in the tar
        self.skipped: list[str] = []  # the key's members that are not regular files
        self.oversize: list[tuple[str, str]] = []  # the key's members over the read cap
        self.keys = UniqueKeys()

    def start(self, raw_key: str) -> None:
        self.raw_key, self.files, self.offsets, self.skipped, self.oversize = raw_key, {}, {}, [], []

    def add(self, ext: str, data: bytes, offset: int) -> None:
        self.files[ext] = data
        self.offsets[ext] = offset

    def error(self, raw_key: str, status: Status, message: str) -> PairSample:
        sample = self.keys.sample(raw_key, self.shard_name, self.index)
        sample.error_status, sample.error = status.value, message
        self.index += 1
        return sample

    def _problem(self, files: dict[str, bytes], image_ext: str | None) -> tuple[Status, str] | None:
        """Why the key's members make no usable pair, if they do not."""
        if self.oversize:
            setting, what = self.oversize[0]
            status = Status.BAD_CAPTION if setting.endswith("caption_bytes") else Status.READ_ERROR
            return status, f"member over the read cap: {what}"
        if self.skipped and image_ext is None:
            return Status.READ_ERROR, (
                f"non-file members (links, FIFOs, devices) are never read: {self.skipped[:4]}")
        if image_ext is None:
            return Status.MISSING_IMAGE, f"no image member (have {sorted(files)})"
        if "txt" not in files:
            return Status.MISSING_CAPTION, "no .txt member"
        return None

    def flush(self) -> Iterator[PairSample]:
        if self.raw_key is None:
            return
        sample = self.keys.sample(self.raw_key, self.shard_name, self.index)
        self.index += 1
        self.raw_key = None
        files = self.files
        image_ext = next((e for e in IMAGE_EXTENSIONS if e in files), None)
        if image_ext is not None:
            sample.image_bytes, sample.image_format = files[image_ext], image_ext
            if self.ranged:
                sample.member_offset = self.offsets[image_ext]
                sample.member_size = len(files[image_ext])
        if "txt" in files:
            sample.caption = decode_caption(files["txt"], sample)
        for ext, data in files.items():  # KEY.<lang>.txt translations shipped with the input
            if ext.endswith(".txt") and ext != "txt":
                sample.captions[ext[: -len(".txt")]] = data.decode("utf-8", errors="replace")
        if "json" in files:
            sample.meta.update(scalar_meta(files["json"]))
        if sample.error_status is None:
            problem = self._problem(files, image_ext)
            if problem is not None:
                sample.error_status, sample.error = problem[0].value, problem[1]
        yield sample
