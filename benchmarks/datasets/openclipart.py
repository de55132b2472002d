"""Open Clip Art Library SVGs with their real titles and descriptions (no ground truth).

Captions come from each SVG's Dublin Core metadata (``dc:title`` and ``dc:description``),
falling back to the SVG ``<title>`` and then to the file name. These are what uploaders
typed, so they are naturally noisy; the pairs carry ``is_noisy = null``. Files whose
metadata cannot be parsed are left out when listed; one that cairosvg cannot render is
skipped by the writer and named in its shard's ``_stats.json``.
"""

from __future__ import annotations

import functools
import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

from pairsift.benchmarks.datasets.tuxpaint import render
from pairsift.models.records import sanitize_key
from pairsift.pipeline.datasets.common import (
    BaseSource,
    Texts,
    encode_image,
    normalise_caption,
    require_path,
    stable_hash,
    unit_hash,
)

DEFAULT_ROOT = "/usr/share/openclipart/svg"
PACKAGE = "openclipart-svg"
TEST_FRACTION = 0.2
MAX_CAPTION_CHARS = 300
MAX_SVG_BYTES = 5_000_000
_DC = "{http://purl.org/dc/elements/1.1/}"
_SVG = "{http://www.w3.org/2000/svg}"


@dataclass(frozen=True)
class Clip:
    rel: str
    path: str
    caption: str


def _text_of(element: ET.Element | None) -> str:
    if element is None:
        return ""
    return re.sub(r"\s+", " ", "".join(element.itertext())).strip()


def svg_caption(path: str) -> str | None:
    """Title (+ description when it adds something) from the SVG metadata, or None."""
    if os.path.getsize(path) > MAX_SVG_BYTES:
        return None
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError):
        return None
    title = _text_of(root.find(f".//{_DC}title")) or _text_of(root.find(f"{_SVG}title"))
    description = _text_of(root.find(f".//{_DC}description"))
    if not title:
        stem = os.path.splitext(os.path.basename(path))[0]
        title = re.sub(r"[_\-]+", " ", stem).strip()
    if description and normalise_caption(description) != normalise_caption(title):
        title = f"{title}: {description}"
    return title[:MAX_CAPTION_CHARS] or None


def find_clips(root: str) -> list[Clip]:
    clips: list[Clip] = []
    for directory, _, files in os.walk(root):
        for name in sorted(files):
            if not name.lower().endswith(".svg"):
                continue
            path = os.path.join(directory, name)
            caption = svg_caption(path)
            if caption is None:
                continue
            rel = os.path.relpath(path, root).replace(os.sep, "/")[: -len(".svg")]
            clips.append(Clip(rel, path, caption))
    return sorted(clips, key=lambda c: c.rel)


class OpenclipartSource(BaseSource):
    name = "openclipart"
    has_ground_truth = False

    def __init__(self, root: str = DEFAULT_ROOT, pairs: int | None = None, max_side: int = 128) -> None:
        require_path(root, PACKAGE)
        clips = find_clips(root)
        if not clips:
            raise ValueError(f"no SVG clip art with metadata under {root}")
        self.clips = clips[:pairs] if pairs is not None else clips
        self.max_side = max_side
        self.image = functools.lru_cache(maxsize=64)(self._image)

    def __len__(self) -> int:
        return len(self.clips)

    def key(self, index: int) -> str:
        return sanitize_key(self.clips[index].rel)

    def split(self, index: int) -> str:
        rel = self.clips[index].rel
        return "test" if unit_hash("openclipart:" + rel) < TEST_FRACTION else "train"

    def group(self, index: int) -> int:
        return stable_hash(normalise_caption(self.clips[index].caption))

    def texts(self, index: int) -> Texts:
        return Texts(self.clips[index].caption)

    def _image(self, index: int) -> tuple[bytes, str]:
        clip = self.clips[index]
        try:
            image = render(clip.path, self.max_side)
        except Exception as exc:  # cairosvg raises many types on malformed SVG
            raise ValueError(f"cannot render {clip.rel}.svg: {type(exc).__name__}: {exc}") from exc
        return encode_image(image, "png"), "png"

    def extra(self, index: int) -> dict[str, Any]:
        return {"category": self.clips[index].rel.split("/", 1)[0]}

    def extra_fields(self) -> list[str]:
        return ["category"]
