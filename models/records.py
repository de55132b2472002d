"""Records that flow between stages, and the audit schema.

Plain dataclasses (no Beam) so that models/, transforms/ and pipeline/ share one vocabulary.
Every input pair ends up as exactly one audit row; ``Status`` names what happened to it.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class Status(str, Enum):
    """Why a pair is (or is not) in the curated output. ``ok`` pairs get a label."""

    OK = "ok"
    READ_ERROR = "read_error"  # tar member unreadable, unsafe path, missing image file
    UNSAFE_PATH = "unsafe_path"  # a table row naming a file outside the table's folder
    REREAD_ERROR = "reread_error"  # embedded in pass 1, but pass 2 could not re-read its bytes
    MISSING_IMAGE = "missing_image"
    MISSING_CAPTION = "missing_caption"
    EMPTY_CAPTION = "empty_caption"
    BAD_CAPTION = "bad_caption"  # binary / huge / undecodable caption
    DECODE_ERROR = "decode_error"  # image bytes Pillow cannot decode (or over the pixel limit)
    EMBED_ERROR = "embed_error"  # the encoder failed on this pair (dead letter)
    NONFINITE_EMBEDDING = "nonfinite_embedding"
    DUPLICATE = "duplicate"  # same image bytes and caption as an earlier pair
    HTTP_ERROR = "http_error"  # a row's URL answered 4xx/5xx (the reason has the code)
    TIMEOUT = "timeout"  # a row's URL did not answer in time (after retries)
    CONNECTION_ERROR = "connection_error"  # refused, reset or unresolvable (after retries)
    DOWNLOAD_ERROR = "download_error"  # img2dataset's own metadata says the download failed


class Label(str, Enum):
    CLEAN = "clean"
    HARD = "hard"
    NOISY = "noisy"


KEPT_LABELS = (Label.CLEAN.value, Label.HARD.value)

# Columns of OUT/audit/*.parquet in order. Per-language columns
# (similarity_<lang>, caption_<lang>, ...) and ground-truth pass-through columns follow them.
AUDIT_COLUMNS: tuple[str, ...] = (
    "key",
    "source_shard",
    "status",
    "error",
    "label",
    "p_clean",
    "uncertainty",
    "soft_label",
    "loss",
    "similarity",
    "translation_consistency",
    "language",
    "caption",
    "width",
    "height",
    "sha256",
    "reason",
)

# Vector columns of OUT/embeddings (image_emb, text_emb, text_emb_ml, text_emb_<lang>).
EMBEDDING_PREFIXES: tuple[str, ...] = ("image_emb", "text_emb")


def is_embedding_column(name: str) -> bool:
    return name.startswith(EMBEDDING_PREFIXES)


# Where pass 1 found a pair's image in its input tar (byte offset and size of the member's
# data, and its CRC-32): pass 2 copies the kept members by these, without parsing the tar.
BYTE_RANGE_COLUMNS: tuple[str, ...] = ("member_offset", "member_size", "member_crc32", "member_ext")


def is_internal_column(name: str) -> bool:
    """A pass-1 column that never reaches the audit: a vector or an image's byte range."""
    return is_embedding_column(name) or name in BYTE_RANGE_COLUMNS


# Ground-truth columns that benchmark datasets carry and the pipeline passes through.
GROUND_TRUTH_COLUMNS: tuple[str, ...] = ("is_noisy", "noise_kind")

_UNSAFE_KEY_CHARS = re.compile(r"[^A-Za-z0-9_\-]")


def sanitize_key(raw: str) -> str:
    """Keys become tar member stems, so they hold no dots, slashes or odd characters."""
    cleaned = _UNSAFE_KEY_CHARS.sub("_", raw.strip())
    return cleaned or "_"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class PairSample:
    """One raw image–caption pair as read from an input shard.

    ``index`` is the pair's position in its shard: it makes every later ordering
    deterministic whatever order a runner delivers elements in.
    """

    key: str
    source_shard: str
    index: int
    image_bytes: bytes | None = None
    image_format: str | None = None
    caption: str | None = None
    captions: dict[str, str] = field(default_factory=dict)  # target-language captions
    language: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)  # pass-through columns (ground truth)
    error_status: str | None = None  # set by a reader that could not read the pair
    error: str | None = None
    original_sha256: str | None = None  # the input's own hash of the original bytes
    member_offset: int | None = None  # the image member's data in an uncompressed tar
    member_size: int | None = None

    @property
    def image_sha256(self) -> str | None:
        """SHA-256 of the original image: the input's own (img2dataset hashes what it
        downloaded, before resizing), else of the bytes read."""
        if self.original_sha256:
            return self.original_sha256
        return sha256_hex(self.image_bytes) if self.image_bytes is not None else None


def audit_row(
    sample: PairSample, status: Status | str, error: str | None = None, **values: Any
) -> dict[str, Any]:
    """An audit row for a pair that stops here (error) or a partial row to be completed."""
    row: dict[str, Any] = {
        "key": sample.key,
        "source_shard": sample.source_shard,
        "index": sample.index,
        "status": Status(status).value,
        "error": error,
        "language": sample.language,
        "caption": sample.caption,
        "sha256": sample.image_sha256,
    }
    if sample.member_offset is not None and sample.image_bytes is not None:
        row.update(member_offset=sample.member_offset, member_size=sample.member_size,
                   member_crc32=zlib.crc32(sample.image_bytes), member_ext=sample.image_format)
    for lang, text in sorted(sample.captions.items()):
        row[f"caption_{lang}"] = text
    for name, value in sample.meta.items():
        row.setdefault(name, value)
    row.update(values)
    return row
