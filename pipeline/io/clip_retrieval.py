"""Precomputed embeddings in clip-retrieval's layout, as pass 1's output.

clip-retrieval (and the LAION and DataComp releases made with it) write, per part N,
``img_emb/img_emb_N.npy`` and ``text_emb/text_emb_N.npy`` (float16 or float32, one row per
pair) and ``metadata/metadata_N.parquet`` with the same rows (``key`` or ``uid``, ``url``,
``caption``...). Each part becomes ``OUT/embeddings/NNNNN.parquet`` in pass 1's format, so a
run that starts from them goes through the fit, score and noise-fit stages `pairsift run`
ships, unchanged.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from pairsift.models.records import Status
from pairsift.models.storage.atomic import filesystem
from pairsift.pipeline.io.shards import UniqueKeys
from pairsift.pipeline.io.table_columns import (
    CAPTION_ALIASES,
    KEY_ALIASES,
    RESERVED,
    URL_ALIASES,
    find_column,
)

_PART = re.compile(r"img_emb_(\d+)\.npy$")


@dataclass(frozen=True)
class EmbeddingPart:
    """One row-aligned part: image vectors, text vectors, metadata."""

    name: str  # NNNNN: its pass-1 file, audit and keep-list names
    image: str
    text: str
    metadata: str | None


def discover_parts(root: str) -> list[EmbeddingPart]:
    """Every part under ``root``, by part number; a clear error when the layout is not there."""
    fs, base = filesystem(root.rstrip("/"))
    images = sorted(fs.glob(f"{base}/img_emb/img_emb_*.npy"))
    if not images:
        raise FileNotFoundError(f"no img_emb/img_emb_N.npy under {root}: expected "
                                "clip-retrieval's layout (img_emb/, text_emb/, metadata/)")
    parts = []
    protocol = root.split("://", 1)[0] + "://" if "://" in root else ""
    for path in images:
        number = int(_PART.search(path).group(1))
        text = f"{base}/text_emb/text_emb_{number}.npy"
        if not fs.exists(text):
            raise FileNotFoundError(f"{protocol}{text} is missing: every img_emb_N.npy needs its text_emb_N.npy")
        meta = f"{base}/metadata/metadata_{number}.parquet"
        parts.append(EmbeddingPart(f"{number:05d}", protocol + path, protocol + text,
                                   protocol + meta if fs.exists(meta) else None))
    return sorted(parts, key=lambda p: p.name)


def _load(path: str) -> np.ndarray:
    fs, p = filesystem(path)
    with fs.open(p, "rb") as handle:
        return np.load(handle)


def _metadata(part: EmbeddingPart, rows: int) -> list[dict[str, Any]]:
    if part.metadata is None:
        return [{} for _ in range(rows)]
    import pyarrow.parquet as pq

    fs, p = filesystem(part.metadata)
    with fs.open(p, "rb") as handle:
        meta = pq.read_table(handle).to_pylist()
    if len(meta) != rows:
        raise ValueError(f"{part.metadata} has {len(meta)} rows, its vectors {rows}: parts must be row-aligned")
    return meta


@dataclass(frozen=True)
class _MetadataColumns:
    key: str | None
    caption: str | None
    url: str | None
    key_is_path: bool  # clip-retrieval's files input: the key is the image path's stem


def _metadata_columns(names: list[str]) -> _MetadataColumns:
    key = find_column(names, KEY_ALIASES)
    path = find_column(names, ("image_path",))
    return _MetadataColumns(key or path, find_column(names, CAPTION_ALIASES),
                            find_column(names, URL_ALIASES), key is None and path is not None)


def part_rows(part: EmbeddingPart) -> list[dict[str, Any]]:
    """The part's pairs as pass-1 rows: ids, the metadata's columns, float16 vectors."""
    image, text = _load(part.image), _load(part.text)
    if image.shape[0] != text.shape[0]:
        raise ValueError(f"{part.image} has {image.shape[0]} rows, {part.text} {text.shape[0]}")
    meta = _metadata(part, image.shape[0])
    columns = _metadata_columns(list(meta[0]) if meta and meta[0] else [])
    keys = UniqueKeys()
    return [_part_row(part, i, extra, columns, keys, image[i], text[i]) for i, extra in enumerate(meta)]


def _part_row(part: EmbeddingPart, i: int, extra: dict[str, Any], columns: _MetadataColumns,
              keys: UniqueKeys, image: np.ndarray, text: np.ndarray) -> dict[str, Any]:
    raw = extra.get(columns.key) if columns.key else None
    if columns.key_is_path and raw:
        raw = posixpath.splitext(posixpath.basename(str(raw)))[0]
    key = keys.assign(str(raw) if raw not in (None, "") else f"{part.name}_{i:09d}")
    caption = extra.get(columns.caption) if columns.caption else None
    row: dict[str, Any] = {
        "key": key, "source_shard": part.name, "index": i, "status": Status.OK.value,
        "caption": caption if isinstance(caption, str) else None,
        # no image bytes to deduplicate by: a fingerprint per pair
        "sha256": hashlib.sha256(f"{part.name}/{key}".encode()).hexdigest(),
        "caption_sha256": hashlib.sha256(f"{part.name}/{key}/c".encode()).hexdigest(),
        "image_emb": np.asarray(image, dtype=np.float16),
        "text_emb": np.asarray(text, dtype=np.float16),
    }
    if raw not in (None, "") and str(raw) != key:
        row["input_key"] = str(raw)
    for name, value in extra.items():
        if name == columns.caption or not isinstance(value, (str, int, float, bool)):
            continue
        target = "url" if name == columns.url else name.lower()
        row.setdefault(f"input_{target}" if target in RESERVED and target != "key" else target, value)
    return row
