"""Tux Paint stamps: ~950 real drawings, English captions and human translations.

Each stamp ``NAME.txt`` holds the English description on its first line and lines like
``de.utf8=...`` with translations; the image is ``NAME.png`` or ``NAME.svg`` (the PNG wins
when both exist). Images are composited on white and fit in ``max_side`` px. The split is
fixed per stamp by a hash of its relative path (~80/20), independent of seed and size.
"""

from __future__ import annotations

import functools
import io
import os
import re
from dataclasses import dataclass
from typing import Any

from PIL import Image

from pairsift.models.records import sanitize_key
from pairsift.pipeline.datasets.common import (
    BaseSource,
    Texts,
    encode_image,
    flatten_alpha,
    lang_code,
    normalise_caption,
    require_path,
    stable_hash,
    unit_hash,
)

DEFAULT_ROOT = "/usr/share/tuxpaint/stamps"
PACKAGE = "tuxpaint-stamps-default"
TEST_FRACTION = 0.2
_TRANSLATION = re.compile(r"^([A-Za-z]{2,3}(?:_[A-Za-z]{2})?(?:@[A-Za-z]+)?)\.utf-?8=(.*)$")


@dataclass(frozen=True)
class Stamp:
    rel: str  # path relative to the root, without extension
    image_path: str
    texts: Texts


def parse_stamp_text(raw: str) -> Texts:
    """First non-empty line: English caption; ``lang.utf8=text`` lines: translations."""
    caption: str | None = None
    captions: dict[str, str] = {}
    for line in raw.splitlines():
        line = line.strip()
        if not line:
            continue
        match = _TRANSLATION.match(line)
        if match:
            text = match.group(2).strip()
            if text:
                captions[lang_code(match.group(1))] = text
        elif caption is None:
            caption = line
    if caption is None:
        raise ValueError("stamp description has no English caption line")
    return Texts(caption, captions)


def find_stamps(root: str) -> list[Stamp]:
    """Every stamp with a caption and an image, sorted by relative path."""
    stamps: list[Stamp] = []
    for directory, _, files in os.walk(root):
        names = set(files)
        for name in sorted(files):
            if not name.endswith(".txt"):
                continue
            stem = name[: -len(".txt")]
            image = next((f"{stem}.{e}" for e in ("png", "svg") if f"{stem}.{e}" in names), None)
            if image is None:
                continue
            with open(os.path.join(directory, name), encoding="utf-8", errors="replace") as handle:
                try:
                    texts = parse_stamp_text(handle.read())
                except ValueError:
                    continue
            rel = os.path.relpath(os.path.join(directory, stem), root).replace(os.sep, "/")
            stamps.append(Stamp(rel, os.path.join(directory, image), texts))
    return sorted(stamps, key=lambda s: s.rel)


_ENTITY = re.compile(rb"<!ENTITY\s+([A-Za-z_][\w.-]*)\s+(\"[^\"]*\"|'[^']*')\s*>")
_DOCTYPE = re.compile(rb"<!DOCTYPE[^\[>]*(\[.*?\])?\s*>", re.S)


def inline_entities(svg: bytes) -> bytes:
    """Expand internal literal entities and drop the DOCTYPE.

    Illustrator exports declare namespaces as entities (``&ns_svg;``); the safe XML parser
    refuses any DOCTYPE entity. Literal internal ones are expanded once here (no external
    or nested entities, so no XXE and no expansion bomb).
    """
    entities = {m.group(1): m.group(2)[1:-1] for m in _ENTITY.finditer(svg)}
    svg = _DOCTYPE.sub(b"", svg, count=1)
    for name, value in entities.items():
        svg = svg.replace(b"&" + name + b";", value.replace(b"&", b"&amp;"))
    return svg


def render(path: str, max_side: int) -> Image.Image:
    if path.endswith(".svg"):
        import cairosvg

        with open(path, "rb") as handle:
            data = inline_entities(handle.read())
        png = cairosvg.svg2png(bytestring=data, output_width=max_side * 2)
        image = Image.open(io.BytesIO(png))
    else:
        image = Image.open(path)
    image.load()
    return flatten_alpha(image, max_side)


class TuxpaintSource(BaseSource):
    name = "tuxpaint"

    def __init__(
        self,
        root: str = DEFAULT_ROOT,
        pairs: int | None = None,
        max_side: int = 128,
        image_format: str = "png",
    ) -> None:
        require_path(root, PACKAGE)
        stamps = find_stamps(root)
        if not stamps:
            raise ValueError(f"no stamps (NAME.txt + NAME.png|svg) under {root}")
        if pairs is not None:
            stamps = stamps[:pairs]
        self.stamps, self.max_side, self.image_format = stamps, max_side, image_format
        self.image = functools.lru_cache(maxsize=256)(self._image)

    def __len__(self) -> int:
        return len(self.stamps)

    def key(self, index: int) -> str:
        return sanitize_key(self.stamps[index].rel)

    def split(self, index: int) -> str:
        return "test" if unit_hash("tuxpaint:" + self.stamps[index].rel) < TEST_FRACTION else "train"

    def group(self, index: int) -> int:
        return stable_hash(normalise_caption(self.stamps[index].texts.caption))

    def texts(self, index: int) -> Texts:
        texts = self.stamps[index].texts
        return Texts(texts.caption, dict(texts.captions))

    def _image(self, index: int) -> tuple[bytes, str]:
        image = render(self.stamps[index].image_path, self.max_side)
        return encode_image(image, self.image_format), self.image_format

    def langs(self) -> list[str]:
        return sorted({lang for s in self.stamps for lang in s.texts.captions})

    def extra(self, index: int) -> dict[str, Any]:
        return {"category": self.stamps[index].rel.split("/", 1)[0]}

    def near_miss_group(self, index: int) -> int:
        """The stamp's category folder (animals, food, ...): a frog's near miss is a blackbird."""
        return stable_hash(self.stamps[index].rel.split("/", 1)[0])

    def extra_fields(self) -> list[str]:
        return ["category"]

    def noun_vocabulary(self) -> list[str]:
        """Last word of each caption ("An electric kettle." → kettle): the object nouns."""
        nouns = set()
        for stamp in self.stamps:
            words = re.findall(r"[A-Za-z]+", stamp.texts.caption)
            if words and len(words[-1]) > 2:
                nouns.add(words[-1].lower())
        return sorted(nouns)
