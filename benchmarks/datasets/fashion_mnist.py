"""Fashion-MNIST: 70k real 28×28 product photos with class labels, captioned from templates.

The official 60k/10k train/test split is kept. ``pairs`` subsamples deterministically (a
seeded choice per split, proportional), so small benchmark sets keep the class balance.
Captions vary the template per image (a per-item draw) so the text side is not ten strings.
The semantic group is the class: a shuffle never hands a pair a caption of its own class.
"""

from __future__ import annotations

import gzip
import os
import re
from typing import Any

import numpy as np
from PIL import Image

from pairsift.pipeline.datasets.common import (
    BaseSource,
    PartialEdit,
    Texts,
    encode_image,
    require_path,
)

DEFAULT_ROOT = "/usr/share/datasets/fashion-mnist"
PACKAGE = "dataset-fashion-mnist"
CLASSES: tuple[str, ...] = (
    "t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
    "ankle boot",
)
_PHRASE = {"trouser": "pair of trousers"}
TEMPLATES: tuple[str, ...] = (
    "a photo of a {label}",
    "a black and white photo of a {label}",
    "a grayscale product image of a {label}",
    "a small picture of a {label}",
    "a {label}",
    "an item of clothing: {label}",
    "catalogue photo showing a {label}",
    "a low resolution image of a {label}",
)
_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def read_idx(path: str) -> np.ndarray:
    """Parse an IDX file (the MNIST container: magic, dims, big-endian sizes, raw bytes)."""
    with gzip.open(path, "rb") as handle:
        data = handle.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file")
    dims = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * k : 8 + 4 * k], "big") for k in range(dims))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims)
    if body.size != int(np.prod(shape)):
        raise ValueError(f"{path}: expected {shape} values, found {body.size}")
    return body.reshape(shape)


def caption_for(label: int, variant: int) -> str:
    name = CLASSES[label]
    text = TEMPLATES[variant % len(TEMPLATES)].format(label=_PHRASE.get(name, name))
    return re.sub(r"\ba (?=[aeiou])", "an ", text)


class FashionMnistSource(BaseSource):
    name = "fashion-mnist"

    def __init__(
        self, root: str = DEFAULT_ROOT, pairs: int | None = None, seed: int = 0, image_size: int = 28
    ) -> None:
        require_path(root, PACKAGE)
        images, labels, splits, originals = [], [], [], []
        for split, (image_file, label_file) in _FILES.items():
            x = read_idx(require_path(os.path.join(root, image_file), PACKAGE))
            y = read_idx(require_path(os.path.join(root, label_file), PACKAGE))
            if x.shape[0] != y.shape[0]:
                raise ValueError(f"{split}: {x.shape[0]} images but {y.shape[0]} labels")
            images.append(x)
            labels.append(y)
            splits += [split] * len(y)
            originals.append(np.arange(len(y)))
        self.images = np.concatenate(images)
        self.labels = np.concatenate(labels).astype(np.int64)
        self.splits = np.array(splits)
        self.originals = np.concatenate(originals)
        self.seed, self.image_size = seed, image_size
        if pairs is not None and pairs < len(self.labels):
            rng = np.random.default_rng([seed, 28])
            keep = np.sort(rng.choice(len(self.labels), size=pairs, replace=False))
            self.images, self.labels = self.images[keep], self.labels[keep]
            self.splits, self.originals = self.splits[keep], self.originals[keep]
        self.variants = np.random.default_rng([seed, 29]).integers(
            len(TEMPLATES), size=len(self.labels)
        )

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def key(self, index: int) -> str:
        return f"fmnist_{self.splits[index]}_{int(self.originals[index]):05d}"

    def split(self, index: int) -> str:
        return str(self.splits[index])

    def group(self, index: int) -> int:
        return int(self.labels[index])

    def texts(self, index: int) -> Texts:
        return Texts(caption_for(int(self.labels[index]), int(self.variants[index])))

    def image(self, index: int) -> tuple[bytes, str]:
        image = Image.fromarray(self.images[index], mode="L")
        if self.image_size != image.width:
            image = image.resize((self.image_size, self.image_size), Image.Resampling.BICUBIC)
        return encode_image(image, "png"), "png"

    def extra(self, index: int) -> dict[str, Any]:
        return {"label": CLASSES[int(self.labels[index])]}

    def extra_fields(self) -> list[str]:
        return ["label"]

    def partial(self, index: int, rng: np.random.Generator) -> PartialEdit:
        """Name another class in the same template: the object noun is the content word."""
        old = int(self.labels[index])
        new = int((old + 1 + rng.integers(len(CLASSES) - 1)) % len(CLASSES))
        caption = caption_for(new, int(self.variants[index]))
        return PartialEdit(Texts(caption), f"noun:{CLASSES[old]}->{CLASSES[new]}")
