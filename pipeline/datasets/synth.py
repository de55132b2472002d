"""Procedurally drawn scenes with compositional captions, any size, deterministic per seed.

Item i is a pure function of (seed, i): a generator seeded with both draws the scene, so
any item (a shuffle partner included) can be produced on demand and a build of millions of
pairs never holds more than one shard. Scenes hold one or two groups of 1–3 objects
(8 colours, 5 shapes) in halves of the image, drawn with 2× supersampling so colours,
shapes and counts stay legible at 64–96 px for frozen pretrained towers.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageDraw

from pairsift.pipeline.datasets.common import (
    BaseSource,
    PartialEdit,
    Texts,
    encode_image,
    stable_hash,
)
from pairsift.pipeline.datasets.synth_text import (
    COLOURS,
    COUNTS,
    LANGS,
    SHAPES,
    Group,
    describe,
)

_LAYOUTS: tuple[tuple[str | None, ...], ...] = (
    (None,), ("left",), ("right",), ("top",), ("bottom",), ("left", "right"), ("top", "bottom"),
)
_LAYOUT_WEIGHTS = np.array([1, 1, 1, 1, 1, 4, 4], dtype=float) / 13.0
_SUPERSAMPLE = 2


@dataclass(frozen=True)
class Scene:
    groups: tuple[Group, ...]  # in mention order
    split: str
    placement_seed: int


def draw_scene(scene: Scene, size: int) -> Image.Image:
    """Render ``scene`` at ``size`` px (white background, supersampled then reduced)."""
    big = size * _SUPERSAMPLE
    image = Image.new("RGB", (big, big), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    rng = np.random.default_rng(scene.placement_seed)
    for group in sorted(scene.groups, key=lambda g: str(g.position)):
        box = _region(group.position, big)
        for cx, cy, radius in _placements(box, group.count, rng):
            _draw_shape(draw, group.shape, COLOURS[group.colour], cx, cy, radius)
    return image.resize((size, size), Image.Resampling.LANCZOS)


def _region(position: str | None, size: int) -> tuple[int, int, int, int]:
    half = size // 2
    return {
        None: (0, 0, size, size), "left": (0, 0, half, size), "right": (half, 0, size, size),
        "top": (0, 0, size, half), "bottom": (0, half, size, size),
    }[position]


def _placements(
    box: tuple[int, int, int, int], count: int, rng: np.random.Generator
) -> list[tuple[float, float, float]]:
    """Distinct grid cells of the region, one object per cell, jittered inside it."""
    x0, y0, x1, y1 = box
    width, height = x1 - x0, y1 - y0
    cols, rows = (1, 3) if height > width else (3, 1) if width > height else (2, 2)
    cell_w, cell_h = width / cols, height / rows
    cells = rng.choice(cols * rows, size=count, replace=False)
    out = []
    for cell in sorted(int(c) for c in cells):
        col, row = cell % cols, cell // cols
        radius = min(cell_w, cell_h) * rng.uniform(0.30, 0.42)
        slack_x, slack_y = cell_w / 2 - radius, cell_h / 2 - radius
        cx = x0 + (col + 0.5) * cell_w + rng.uniform(-slack_x, slack_x) * 0.8
        cy = y0 + (row + 0.5) * cell_h + rng.uniform(-slack_y, slack_y) * 0.8
        out.append((cx, cy, radius))
    return out


def _draw_shape(
    draw: ImageDraw.ImageDraw, shape: str, colour: tuple[int, int, int], cx: float, cy: float, r: float
) -> None:
    if shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
    elif shape == "square":
        side = r * 0.85
        draw.rectangle((cx - side, cy - side, cx + side, cy + side), fill=colour)
    elif shape == "triangle":
        draw.polygon([(cx, cy - r), (cx - r * 0.95, cy + r * 0.8), (cx + r * 0.95, cy + r * 0.8)],
                     fill=colour)
    elif shape == "diamond":
        draw.polygon([(cx, cy - r), (cx + r * 0.75, cy), (cx, cy + r), (cx - r * 0.75, cy)],
                     fill=colour)
    elif shape == "star":
        points = []
        for k in range(10):
            radius = r if k % 2 == 0 else r * 0.45
            angle = -math.pi / 2 + k * math.pi / 5
            points.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle)))
        draw.polygon(points, fill=colour)
    else:
        raise ValueError(f"unknown shape {shape!r}")


class SynthSource(BaseSource):
    """``pairs`` synthetic scenes; ``test_fraction`` of them (by a per-item draw) are test."""

    name = "synth"

    def __init__(
        self,
        pairs: int,
        seed: int = 0,
        image_size: int = 64,
        test_fraction: float = 0.1,
        image_format: str = "png",
    ) -> None:
        if pairs < 1:
            raise ValueError("synth needs at least one pair")
        if not 32 <= image_size <= 512:
            raise ValueError("synth image size must be between 32 and 512 px")
        self.pairs, self.seed, self.image_size = pairs, seed, image_size
        self.test_fraction, self.image_format = test_fraction, image_format
        self.scene = functools.lru_cache(maxsize=4096)(self._scene)

    def __len__(self) -> int:
        return self.pairs

    def _scene(self, index: int) -> Scene:
        if not 0 <= index < self.pairs:
            raise IndexError(index)
        rng = np.random.default_rng([self.seed, index])
        split = "test" if rng.random() < self.test_fraction else "train"
        layout = _LAYOUTS[int(rng.choice(len(_LAYOUTS), p=_LAYOUT_WEIGHTS))]
        groups = tuple(
            Group(
                int(COUNTS[rng.integers(len(COUNTS))]),
                list(COLOURS)[int(rng.integers(len(COLOURS)))],
                SHAPES[int(rng.integers(len(SHAPES)))],
                position,
            )
            for position in layout
        )
        if len(groups) == 2 and rng.random() < 0.5:
            groups = groups[::-1]  # mention order must not give away the layout
        return Scene(groups, split, int(rng.integers(2**62)))

    def key(self, index: int) -> str:
        return f"synth{self.seed}_{index:09d}"

    def split(self, index: int) -> str:
        return self.scene(index).split

    def group(self, index: int) -> int:
        canonical = sorted(
            (g.count, g.colour, g.shape, str(g.position)) for g in self.scene(index).groups
        )
        return stable_hash(repr(canonical))

    def near_miss_group(self, index: int) -> int:
        """The scene's layout, shapes and counts: its near misses differ only in colour."""
        canonical = sorted((g.count, g.shape, str(g.position)) for g in self.scene(index).groups)
        return stable_hash(repr(canonical))

    def texts(self, index: int) -> Texts:
        return _texts(self.scene(index).groups)

    def image(self, index: int) -> tuple[bytes, str]:
        image = draw_scene(self.scene(index), self.image_size)
        return encode_image(image, self.image_format), self.image_format

    def langs(self) -> list[str]:
        return list(LANGS)

    def partial(self, index: int, rng: np.random.Generator) -> PartialEdit:
        """Change one attribute (colour, shape or count) of one group; all languages follow."""
        groups = list(self.scene(index).groups)
        target = int(rng.integers(len(groups)))
        attribute = ("colour", "shape", "count")[int(rng.integers(3))]
        group = groups[target]
        values: tuple = {"colour": tuple(COLOURS), "shape": SHAPES, "count": COUNTS}[attribute]
        old = getattr(group, attribute)
        options = [v for v in values if v != old]
        new = options[int(rng.integers(len(options)))]
        groups[target] = replace(group, **{attribute: new})
        return PartialEdit(_texts(tuple(groups)), f"{attribute}:{old}->{new}")

    def noun_vocabulary(self) -> list[str]:
        return list(SHAPES)


def _texts(groups: tuple[Group, ...]) -> Texts:
    return Texts(describe(groups, "en"), {lang: describe(groups, lang) for lang in LANGS})
