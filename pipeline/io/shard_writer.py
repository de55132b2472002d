"""Writes one shard in the img2dataset/DataComp layout: NNNNN.tar + NNNNN.parquet + NNNNN_stats.json.

Tar members carry fixed metadata (mtime 0, uid/gid 0, mode 0644) so the same samples give
byte-identical shards. The tar is POSIX pax: names that fit a plain ustar header are written
as one (the same bytes as ustar), longer keys get a pax header instead of failing the shard.
``_stats.json`` is written last and doubles as the completion marker.
"""

from __future__ import annotations

import io
import tarfile
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from pairsift.models.storage.atomic import atomic_open, exists, join, write_json
from pairsift.models.storage.tables import rows_to_table


@dataclass
class ShardSample:
    """A sample as written: tar members by extension (``jpg``, ``txt``, ``pt.txt``, ``json``)."""

    key: str
    files: dict[str, bytes]
    row: dict[str, Any] = field(default_factory=dict)


def shard_paths(out_dir: str, shard_name: str) -> dict[str, str]:
    return {
        "tar": join(out_dir, f"{shard_name}.tar"),
        "parquet": join(out_dir, f"{shard_name}.parquet"),
        "stats": join(out_dir, f"{shard_name}_stats.json"),
    }


def shard_complete(out_dir: str, shard_name: str) -> bool:
    return exists(shard_paths(out_dir, shard_name)["stats"])


def member_info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name=name)
    info.size = size
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def add_tar_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    tar.addfile(member_info(name, len(data)), io.BytesIO(data))


_TEMPLATE = member_info("", 0).tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
_NAME, _SIZE, _CHKSUM = slice(0, 100), slice(124, 136), slice(148, 156)
# the template's byte sum outside the fields that vary, the checksum field counted as spaces
_FIXED_SUM = sum(_TEMPLATE) - sum(_TEMPLATE[_NAME]) - sum(_TEMPLATE[_SIZE]) - sum(_TEMPLATE[_CHKSUM]) + 8 * 32


def member_header(name: str, size: int) -> bytes:
    """The header ``tarfile`` writes for ``member_info(name, size)`` in a PAX tar, built
    without it for the common member (an ASCII name of at most 100 bytes, under 8 GiB): one
    512-byte ustar block, the same bytes. Any other member gets tarfile's own (pax) header."""
    encoded = name.encode("ascii", errors="ignore")
    if len(encoded) != len(name) or len(encoded) > 100 or size >= 8**11:
        return member_info(name, size).tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
    name_field = encoded.ljust(100, b"\0")
    size_field = b"%011o\0" % size
    checksum = _FIXED_SUM + sum(name_field) + sum(size_field)
    return b"".join((name_field, _TEMPLATE[100:124], size_field, _TEMPLATE[136:148],
                     b"%06o\0 " % checksum, _TEMPLATE[156:]))


class TarStream:
    """Writes tar members to a binary handle with the bytes ``tarfile`` would write (fixed
    metadata, PAX format), at the cost of one small header each: pass 2 copies kept images
    straight from their input bytes into it. Members are gathered into blocks of about
    :data:`FLUSH_BYTES`, so the handle (a Python-level fsspec file) sees a few large writes,
    not three small ones a member."""

    FLUSH_BYTES = 4 * 2**20

    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle
        self.offset = 0
        self._pending: list[bytes | memoryview] = []
        self._pending_bytes = 0

    def add(self, name: str, data: bytes | memoryview) -> int:
        """Append one member; returns the offset of its data in the archive."""
        header = member_header(name, len(data))
        padding = -len(data) % tarfile.BLOCKSIZE
        self._pending += (header, data, _ZEROS[:padding]) if padding else (header, data)
        size = len(header) + len(data) + padding
        data_offset = self.offset + len(header)
        self.offset += size
        self._pending_bytes += size
        if self._pending_bytes >= self.FLUSH_BYTES:
            self.flush()
        return data_offset

    def flush(self) -> None:
        if self._pending:
            self.handle.write(b"".join(self._pending))
            self._pending, self._pending_bytes = [], 0

    def close(self) -> None:
        """The end of the archive as tarfile writes it: two zero blocks, then zeros up to a
        whole record."""
        self.flush()
        end = self.offset + 2 * tarfile.BLOCKSIZE
        self.handle.write(b"\0" * (2 * tarfile.BLOCKSIZE + (-end % tarfile.RECORDSIZE)))


_ZEROS = bytes(tarfile.BLOCKSIZE)


def write_shard(
    out_dir: str,
    shard_name: str,
    samples: list[ShardSample],
    stats: dict[str, Any] | None = None,
    schema: pa.Schema | None = None,
    count_by: str | None = "status",
    complete: bool = True,
    table: pa.Table | None = None,
) -> dict[str, Any]:
    """Write a whole shard atomically. Returns the stats, written to ``_stats.json`` (the
    shard's completion marker) unless ``complete`` is false. ``table``: the samples' parquet
    rows already built by column (one per sample, in order), instead of their ``row``s."""
    paths = shard_paths(out_dir, shard_name)
    with atomic_open(paths["tar"], "wb") as raw:
        tar = TarStream(raw)
        for sample in samples:
            if "." in sample.key or "/" in sample.key:
                raise ValueError(f"shard keys must not contain '.' or '/': {sample.key!r}")
            for ext in sorted(sample.files):
                tar.add(f"{sample.key}.{ext}", sample.files[ext])
        tar.close()
    if table is None:
        rows = [s.row for s in samples]
        table = rows_to_table(rows, schema=schema) if schema is not None else rows_to_table(rows)
    with atomic_open(paths["parquet"], "wb") as handle:
        pq.write_table(table, handle)
    summary: dict[str, Any] = {"count": len(samples)}
    if count_by is not None:
        values = table.column(count_by).to_pylist() if count_by in table.column_names else [None] * len(samples)
        summary[f"by_{count_by}"] = dict(sorted(Counter(str(v) for v in values).items()))
    summary.update(stats or {})
    if complete:
        write_json(paths["stats"], summary)
    return summary
