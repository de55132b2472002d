"""A built dataset folder (img2dataset layout) read back as a ``PairSource``.

Lets the quality benchmark run on any clean dataset built by ``pairsift data`` (or any
WebDataset with ``KEY.json`` carrying ``split``) without the raw data or the renderers that
built it: the shard's image bytes are the ones the builder wrote, so the content-addressed
embedding cache recognises them. Only clean pairs make sense as benchmark items (noise is
injected by the benchmark itself), so a folder with noisy pairs is refused.
"""

from __future__ import annotations

from typing import Any

from pairsift.pipeline.datasets.common import BaseSource, Texts, normalise_caption, stable_hash
from pairsift.pipeline.io.readers import discover_shards, read_shard


class ShardSource(BaseSource):
    """Every readable pair of the shards under ``path``, in shard order."""

    def __init__(self, path: str, name: str = "shards", pairs: int | None = None) -> None:
        self.name = name
        self.items: list[tuple[str, str, bytes, str, Texts]] = []
        skipped = 0
        for shard in discover_shards(path):
            for sample in read_shard(shard):
                if sample.error_status is not None or not sample.caption or not sample.image_bytes:
                    skipped += 1
                    continue
                if sample.meta.get("is_noisy") is True:
                    raise ValueError(
                        f"{path} holds noisy pairs ({sample.key}); build the benchmark dataset "
                        "without --noise: the benchmark injects its own noise"
                    )
                key = str(sample.meta.get("original_key") or sample.key)
                split = str(sample.meta.get("split") or "train")
                texts = Texts(sample.caption, dict(sample.captions))
                self.items.append((key, split, sample.image_bytes, sample.image_format or "jpg",
                                   texts))
                if pairs is not None and len(self.items) >= pairs:
                    break
            if pairs is not None and len(self.items) >= pairs:
                break
        if not self.items:
            raise ValueError(f"no readable pairs under {path} ({skipped} unreadable)")
        self.skipped = skipped

    def __len__(self) -> int:
        return len(self.items)

    def key(self, index: int) -> str:
        return self.items[index][0]

    def split(self, index: int) -> str:
        return self.items[index][1]

    def group(self, index: int) -> int:
        return stable_hash(normalise_caption(self.items[index][4].caption))

    def texts(self, index: int) -> Texts:
        texts = self.items[index][4]
        return Texts(texts.caption, dict(texts.captions))

    def image(self, index: int) -> tuple[bytes, str]:
        return self.items[index][2], self.items[index][3]

    def langs(self) -> list[str]:
        return sorted({lang for item in self.items for lang in item[4].captions})

    def extra(self, index: int) -> dict[str, Any]:
        return {}
