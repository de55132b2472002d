"""What every reader shares: the unit of work (``InputShard``) and caption and sidecar
decoding, so the tar, table and folder readers agree on them."""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from typing import Any

from fsspec.implementations.local import LocalFileSystem

from pairsift.models.records import PairSample, Status, sanitize_key
from pairsift.pipeline.io.table_columns import ColumnChoice

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff")
TABLE_EXTENSIONS = (".parquet", ".csv", ".jsonl", ".json")
FOLDER_CHUNK = 10_000
TAR_EXTENSIONS = (".tar", ".tar.gz", ".tgz")


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
    max_caption_bytes: int = 2**20  # a caption (or sidecar) longer than this is not read
    # a table's key, image and caption columns, where the user named them (input.*_column)
    key_column: str | None = None
    image_column: str | None = None
    caption_column: str | None = None

    @property
    def column_choice(self) -> ColumnChoice:
        return ColumnChoice(self.key_column, self.image_column, self.caption_column)


def decode_caption(data: bytes, sample: PairSample) -> str | None:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        sample.error_status, sample.error = Status.BAD_CAPTION.value, f"caption is not UTF-8: {exc}"
        return None


# Sidecar JSON fields worth carrying (ground truth and provenance); the rest stays in the source.
META_FIELDS = ("is_noisy", "noise_kind", "url", "original_key", "split", "label", "true_caption_key")


def scalar_meta(data: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return {}
    if not isinstance(obj, dict):
        return {}
    return {k: obj[k] for k in META_FIELDS if k in obj and isinstance(obj[k], (str, int, float, bool))}


def read_capped(fs: Any, path: str, cap: int, setting: str = "limits.max_image_bytes") -> bytes:
    """A file's bytes, at most ``cap`` of them: a local file must be a regular one (a FIFO or
    a device would block or never end), and a longer file is an error (naming the config
    ``setting`` that sets the cap), not a truncation."""
    if isinstance(fs, LocalFileSystem) and not stat.S_ISREG(os.stat(path).st_mode):
        raise OSError(f"{path} is not a regular file")
    with fs.open(path, "rb") as handle:
        data = handle.read(cap + 1)
    if len(data) > cap:
        raise OSError(f"over the {cap}-byte cap ({setting})")
    return data


def number_repeats(names: list[str]) -> list[str]:
    """``names`` with the second, third... occurrence of a name as ``name_2``, ``name_3``, in
    the given order: shard names and folder keys must be unique."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        count = seen.get(name, 0) + 1
        seen[name] = count
        out.append(name if count == 1 else f"{name}_{count}")
    return out


class UniqueKeys:
    """Keys of one shard: sanitised (they become tar member stems) and made unique with
    ``_dup1``, ``_dup2``... in reading order. Where the audit's key differs from the input's,
    the sample keeps the input's spelling, in full, as ``input_key``."""

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def assign(self, raw_key: str) -> str:
        key = sanitize_key(raw_key)
        candidate, n = key, 1
        while candidate in self.seen:
            candidate, n = f"{key}_dup{n}", n + 1
        self.seen.add(candidate)
        return candidate

    def sample(self, raw_key: str, shard_name: str, index: int) -> PairSample:
        sample = PairSample(self.assign(raw_key), shard_name, index)
        if sample.key != raw_key:
            sample.meta[INPUT_KEY] = raw_key
        return sample


INPUT_KEY = "input_key"  # audit column: the key as the input spelled it, where it differs


def caption_over_cap(text: str, cap: int) -> str | None:
    """Why a caption is too long to take in (``limits.max_caption_bytes``), or None."""
    size = len(text.encode("utf-8", errors="replace"))
    if size <= cap:
        return None
    return f"caption of {size} bytes over the {cap}-byte cap (limits.max_caption_bytes)"
