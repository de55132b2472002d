"""The anchors a pair's neighbours are found among, searched by an inverted-file index.

Neighbour consistency (models/noise/consistency.py) needs, for each pair, its k nearest
anchor images and its k nearest anchor captions. An exact search costs a pair one product
with every anchor (20,000 by default) and a top-k over them; the inverted-file (IVF) index
here costs it ``lists`` centroid products plus the anchors of the ``probes`` lists nearest to
it: about 15× less at 20,000 anchors, and a cost that no longer grows with the anchors.

Determinism (a run's bytes must not depend on the machine's thread count or the runner):
the lists come from a seeded spherical k-means in float64 with a fixed number of steps, and
faiss searches each query on one thread, so a query's neighbours depend on nothing but the
query and the saved anchors. ``probes = 0`` searches exactly (faiss's flat index), the
reference the approximate search is measured against (docs/noise_modelling.md).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

ANCHORS_FILE = "anchors.safetensors"
META_FILE = "neighbours.json"
_CHUNK = 1024
_KMEANS_STEPS = 8
_MIN_LIST = 32  # anchors per list, on average; fewer anchors than 2 lists' worth: exact


def anchor_rows(keys: list[str], limit: int, seed: int) -> np.ndarray:
    """Indices of a deterministic, order-independent sample of at most ``limit`` keys: the
    ``limit`` smallest seeded hashes, so the same key is an anchor whatever the input order."""
    if len(keys) <= limit:
        return np.arange(len(keys))
    ranks = [hashlib.sha1(f"{seed}:{k}".encode()).digest() for k in keys]
    chosen = sorted(range(len(keys)), key=ranks.__getitem__)[:limit]
    return np.sort(np.asarray(chosen))


def centre_normalise(x: np.ndarray, mean: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32) - mean[None, :]
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def list_count(anchors: int, probes: int) -> int:
    """IVF lists for ``anchors``: about √anchors (the cost of a query is lists + probes ×
    anchors / lists, least there); 0, an exact search, for too few anchors or ``probes`` 0."""
    lists = int(round(np.sqrt(anchors)))
    if probes <= 0 or lists <= probes or anchors < 2 * _MIN_LIST:
        return 0
    return lists


def spherical_kmeans(x: np.ndarray, lists: int, seed: int) -> np.ndarray:
    """Unit-norm centroids of ``lists`` clusters of the unit rows of ``x`` (float64, seeded,
    a fixed number of steps: the same centroids on any machine)."""
    rng = np.random.default_rng(seed)
    data = np.asarray(x, dtype=np.float64)
    centroids = data[np.sort(rng.choice(len(data), lists, replace=False))].copy()
    for _ in range(_KMEANS_STEPS):
        assign = np.argmax(data @ centroids.T, axis=1)
        sums = np.zeros_like(centroids)
        np.add.at(sums, assign, data)
        empty = ~np.any(sums != 0.0, axis=1)
        sums[empty] = centroids[empty]  # an emptied list keeps its centroid
        centroids = sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
    return centroids.astype(np.float32)


def _search_index(anchors: np.ndarray, centroids: np.ndarray | None, probes: int) -> tuple[Any, ...]:
    """A faiss inner-product index over ``anchors``: IVF on ``centroids``, or flat (exact),
    with the objects it points at (the IVF index does not own its quantizer)."""
    import logging

    logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # its CPU-feature probing
    import faiss

    dim = anchors.shape[1]
    quantizer = None
    if centroids is None or len(centroids) == 0:
        index = faiss.IndexFlatIP(dim)
    else:
        quantizer = faiss.IndexFlatIP(dim)
        quantizer.add(np.ascontiguousarray(centroids, dtype=np.float32))
        index = faiss.IndexIVFFlat(quantizer, dim, len(centroids), faiss.METRIC_INNER_PRODUCT)
        index.is_trained = True  # the lists are ours (seeded k-means), never faiss's training
        index.nprobe = int(probes)
    index.add(np.ascontiguousarray(anchors, dtype=np.float32))
    return index, quantizer


class AnchorSearch:
    """Key lookup and the lazily built faiss index of each side of a set of anchors; a
    dataclass that mixes it in holds ``keys``, ``probes``, ``_row_of``, ``_search`` and
    says which anchors and centroids each side searches (:meth:`_side`)."""

    keys: list[str]
    probes: int
    _row_of: dict[str, int]
    _search: dict[str, Any]

    def _side(self, side: str) -> tuple[np.ndarray, np.ndarray | None]:
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.keys)

    def rows_of(self, keys: list[str]) -> np.ndarray:
        """Anchor row of each key, −1 for a key that is not an anchor."""
        if not self._row_of:
            self._row_of = {key: i for i, key in enumerate(self.keys)}
        return np.asarray([self._row_of.get(key, -1) for key in keys], dtype=np.int64)

    def _index(self, side: str) -> Any:
        if side not in self._search:
            self._search[side] = _search_index(*self._side(side), self.probes)
        return self._search[side][0]


@dataclass
class NeighbourIndex(AnchorSearch):
    """Anchor pairs (centred, normalised tower embeddings) to find a pair's neighbours among."""

    image: np.ndarray
    text: np.ndarray
    image_mean: np.ndarray
    text_mean: np.ndarray
    keys: list[str]
    k: int = 30
    probes: int = 0
    image_centroids: np.ndarray | None = None
    text_centroids: np.ndarray | None = None
    _row_of: dict[str, int] = field(default_factory=dict, repr=False, compare=False)
    _search: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def build(
        cls, image: np.ndarray, text: np.ndarray, keys: list[str], k: int,
        probes: int = 0, seed: int = 0,
    ) -> NeighbourIndex:
        """From raw tower embeddings of the anchor pairs (row-aligned with ``keys``);
        ``probes`` > 0 searches that many IVF lists per query instead of every anchor."""
        if len(image) != len(text) or len(image) != len(keys):
            raise ValueError(f"anchors disagree in length: {len(image)}, {len(text)}, {len(keys)}")
        if k < 1:
            raise ValueError(f"consistency.neighbours must be >= 1, got {k}")
        if probes < 0:
            raise ValueError(f"consistency.probes must be >= 0, got {probes}")
        image_mean = np.asarray(image, dtype=np.float32).mean(0)
        text_mean = np.asarray(text, dtype=np.float32).mean(0)
        v, t = centre_normalise(image, image_mean), centre_normalise(text, text_mean)
        lists = list_count(len(keys), probes)
        centroids_v = spherical_kmeans(v, lists, seed) if lists else None
        centroids_t = spherical_kmeans(t, lists, seed + 1) if lists else None
        return cls(v, t, image_mean, text_mean, list(keys), int(k), int(probes) if lists else 0,
                   centroids_v, centroids_t)

    def _side(self, side: str) -> tuple[np.ndarray, np.ndarray | None]:
        if side == "image":
            return self.image, self.image_centroids
        return self.text, self.text_centroids

    def score(
        self, image: np.ndarray, text: np.ndarray,
        exclude_image: np.ndarray | None = None, exclude_text: np.ndarray | None = None,
    ) -> np.ndarray:
        """Consistency of each (image, text) row; NaN where no anchor is left to average.

        ``exclude_image`` / ``exclude_text``: per row, an anchor (row index, −1 for none) that
        is not its neighbour: the anchor the image (caption) comes from, which would otherwise
        be its own nearest neighbour and carry its own caption (image) with it. Excluded
        anchors are dropped from a top-(k + 2) list, never masked in a similarity matrix.
        """
        n = len(image)
        out = np.full(n, np.nan)
        k = min(self.k, len(self) - 2)  # up to two anchors excluded per row
        if n == 0 or k < 1:
            return out
        none = np.full(n, -1, dtype=np.int64)
        ex_i = none if exclude_image is None else np.asarray(exclude_image, dtype=np.int64)
        ex_t = none if exclude_text is None else np.asarray(exclude_text, dtype=np.int64)
        v_all = centre_normalise(image, self.image_mean)
        t_all = centre_normalise(text, self.text_mean)
        for start in range(0, n, _CHUNK):
            rows = slice(start, start + _CHUNK)
            v, t = v_all[rows], t_all[rows]
            excluded = np.stack([ex_i[rows], ex_t[rows]], axis=1)
            _, by_image = self._index("image").search(v, k + 2)
            _, by_text = self._index("text").search(t, k + 2)
            out[rows] = (_neighbour_mean(by_image, excluded, k, t, self.text)
                         + _neighbour_mean(by_text, excluded, k, v, self.image))
        return out

    def save(self, directory: str, extra: dict[str, Any] | None = None) -> None:
        """Anchors (and IVF centroids) as safetensors, keys, k and ``extra`` as JSON, beside
        the scoring state (any fsspec path, written atomically)."""
        import torch

        from pairsift.models.storage.tensor_files import join, write_json, write_tensors

        names = ["image", "text", "image_mean", "text_mean"]
        if self.image_centroids is not None:
            names += ["image_centroids", "text_centroids"]
        write_tensors(join(directory, ANCHORS_FILE), {
            name: torch.from_numpy(np.ascontiguousarray(getattr(self, name))) for name in names
        })
        write_json(join(directory, META_FILE),
                   {"k": self.k, "probes": self.probes, "keys": self.keys, **(extra or {})})

    @classmethod
    def load(cls, directory: str) -> NeighbourIndex:
        from pairsift.models.storage.tensor_files import join, read_json, read_tensors

        meta = read_json(join(directory, META_FILE))
        arrays = {name: t.numpy() for name, t in read_tensors(join(directory, ANCHORS_FILE)).items()}
        return cls(arrays["image"], arrays["text"], arrays["image_mean"], arrays["text_mean"],
                   list(meta["keys"]), int(meta["k"]), int(meta.get("probes", 0)),
                   arrays.get("image_centroids"), arrays.get("text_centroids"))

    @staticmethod
    def meta(directory: str) -> dict[str, Any]:
        from pairsift.models.storage.tensor_files import join, read_json

        return read_json(join(directory, META_FILE))

    @staticmethod
    def exists(directory: str) -> bool:
        from pairsift.models.storage.tensor_files import exists, join

        return exists(join(directory, META_FILE))


def _neighbour_mean(
    nearest: np.ndarray, excluded: np.ndarray, k: int, read: np.ndarray, anchors: np.ndarray
) -> np.ndarray:
    """Mean cosine of each ``read`` row with the anchors of its first k ``nearest`` ids that
    are neither missing (−1) nor ``excluded``: a partial top-k, no similarity matrix."""
    keep = (nearest >= 0) & (nearest != excluded[:, :1]) & (nearest != excluded[:, 1:2])
    keep &= np.cumsum(keep, axis=1) <= k
    ids = np.where(keep, nearest, 0)
    sims = np.einsum("nd,nkd->nk", read, anchors[ids], optimize=False)
    count = keep.sum(axis=1)
    total = np.where(keep, sims, 0.0).sum(axis=1, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan)
