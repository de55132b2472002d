"""Shared pieces of the benchmark dataset builders.

Every builder is a ``PairSource``: random access to *clean* items by index (an image, an
English caption, human or procedural translations, a split and a semantic group id). Noise
is applied on top by index (``noise.py``), so the same source serves the shard writer
(``writer.py``) and the quality benchmark, which embeds the clean items once and only
re-pairs them per noise setting.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
from PIL import Image


class MissingDatasetError(RuntimeError):
    """A builder's raw data (a Debian package) is not installed on this machine."""


def require_path(path: str, package: str) -> str:
    """Return ``path`` if it exists, else raise an error naming the package to install."""
    if not os.path.exists(path):
        raise MissingDatasetError(
            f"{path} not found: install the Debian package with "
            f"`sudo apt-get install {package}` (or pass the data folder explicitly)"
        )
    return path


@dataclass
class Texts:
    """An English caption and its translations (``lang -> text``)."""

    caption: str
    captions: dict[str, str] = field(default_factory=dict)


@dataclass
class PartialEdit:
    """Result of partial noise: the corrupted texts and what was changed (for the audit)."""

    texts: Texts
    detail: str


@runtime_checkable
class PairSource(Protocol):
    """Random access to a dataset's clean pairs. Implementations must be deterministic."""

    name: str

    def __len__(self) -> int: ...

    def key(self, index: int) -> str: ...

    def split(self, index: int) -> str: ...

    def group(self, index: int) -> int:
        """Semantic identity: two items in one group have interchangeable captions."""
        ...

    def texts(self, index: int) -> Texts: ...

    def image(self, index: int) -> tuple[bytes, str]:
        """Encoded image bytes and their extension (``png`` or ``jpg``)."""
        ...

    def langs(self) -> list[str]:
        """Every translation language any item may carry (fixes the parquet schema)."""
        ...

    def extra(self, index: int) -> dict[str, Any]:
        """Dataset-specific row fields (e.g. a class label); values are strings or None."""
        ...

    def extra_fields(self) -> list[str]: ...

    def partial(self, index: int, rng: np.random.Generator) -> PartialEdit | None:
        """Structured partial noise if the source knows its captions' content, else None."""
        ...

    def near_miss_group(self, index: int) -> int | None:
        """Items in one near-miss group are alike but not the same (another stamp of the
        same category, a scene that differs only in colour): the donors of ``neighbour``
        noise. Defined by the data, never by an embedding. None: the source has none."""
        ...


def stable_hash(text: str) -> int:
    """A process-independent 63-bit hash (Python's ``hash`` is salted per process)."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big") >> 1


def unit_hash(text: str) -> float:
    """A deterministic number in [0, 1) derived from ``text`` (for fixed splits)."""
    return stable_hash(text) / float(1 << 63)


def normalise_caption(text: str) -> str:
    """Lower-case, collapse whitespace and strip trailing punctuation (caption identity)."""
    return re.sub(r"\s+", " ", text.strip().lower()).rstrip(" .!?")


def encode_image(image: Image.Image, fmt: str = "png", quality: int = 90) -> bytes:
    """Encode deterministically (no timestamps or optional chunks)."""
    buffer = io.BytesIO()
    if fmt == "png":
        image.save(buffer, format="PNG", optimize=False, compress_level=6)
    elif fmt in ("jpg", "jpeg"):
        image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    else:
        raise ValueError(f"unsupported image format {fmt!r}: expected png or jpg")
    return buffer.getvalue()


def flatten_alpha(image: Image.Image, max_side: int) -> Image.Image:
    """Composite on white (stamps and clip art are transparent) and fit in ``max_side``."""
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    background.alpha_composite(rgba)
    rgb = background.convert("RGB")
    if max(rgb.size) > max_side:
        scale = max_side / max(rgb.size)
        size = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
        rgb = rgb.resize(size, Image.Resampling.LANCZOS)
    return rgb


def lang_code(raw: str) -> str:
    """``pt_BR.utf8`` → ``pt_BR``; ``ca@valencia.utf8`` → ``ca_valencia`` (no dots, no '@')."""
    code = raw.split(".", 1)[0]
    return re.sub(r"[^A-Za-z0-9_]", "_", code)


class BaseSource:
    """Defaults shared by the concrete sources."""

    name = "base"

    def langs(self) -> list[str]:
        return []

    def extra(self, index: int) -> dict[str, Any]:
        return {}

    def extra_fields(self) -> list[str]:
        return []

    def partial(self, index: int, rng: np.random.Generator) -> PartialEdit | None:
        return None

    def near_miss_group(self, index: int) -> int | None:
        return None

    def noun_vocabulary(self) -> list[str]:
        """Object nouns for generic partial noise (word-level replacement)."""
        return []
