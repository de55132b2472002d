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
from typing import Any

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


def add_tar_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name=name)
    info.size = len(data)
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))


def write_shard(
    out_dir: str,
    shard_name: str,
    samples: list[ShardSample],
    stats: dict[str, Any] | None = None,
    schema: pa.Schema | None = None,
    count_by: str | None = "status",
    complete: bool = True,
) -> dict[str, Any]:
    """Write a whole shard atomically. Returns the stats, written to ``_stats.json`` (the
    shard's completion marker) unless ``complete`` is false."""
    paths = shard_paths(out_dir, shard_name)
    with atomic_open(paths["tar"], "wb") as raw, tarfile.open(
        fileobj=raw, mode="w", format=tarfile.PAX_FORMAT
    ) as tar:
        for sample in samples:
            if "." in sample.key or "/" in sample.key:
                raise ValueError(f"shard keys must not contain '.' or '/': {sample.key!r}")
            for ext in sorted(sample.files):
                add_tar_member(tar, f"{sample.key}.{ext}", sample.files[ext])
    rows = [s.row for s in samples]
    table = rows_to_table(rows, schema=schema) if schema is not None else rows_to_table(rows)
    with atomic_open(paths["parquet"], "wb") as handle:
        pq.write_table(table, handle)
    summary: dict[str, Any] = {"count": len(samples)}
    if count_by is not None:
        summary[f"by_{count_by}"] = dict(
            sorted(Counter(str(r.get(count_by)) for r in rows).items())
        )
    summary.update(stats or {})
    if complete:
        write_json(paths["stats"], summary)
    return summary
