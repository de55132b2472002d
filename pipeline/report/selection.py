"""Which pairs the report shows: bounded galleries picked from the audit, file by file.

The tally job (pipeline/tally.py) runs :func:`file_candidates` on each audit file and sums
the results with ``+`` (:class:`GalleryCandidates` keeps only each gallery's best ``limit``
rows, so any merge order gives the same galleries and nothing grows with the number of
pairs). Every gallery is "the ``limit`` rows of smallest sort key", with the pair's
(shard, key) hash as the last tie-break, so the choice never depends on how a runner split the
audit:

- ``noisy``: the most confidently noisy pairs (lowest p_clean);
- ``borderline_dropped`` / ``borderline_kept``: the pairs nearest the keep cut on each side
  (noisy pairs of highest p_clean; kept pairs of lowest p_clean — the cut ranks by p_clean,
  or by the loss, which p_clean falls with);
- ``random_kept``: kept pairs in the order of a seeded hash;
- ``translation_<lang>``: the translations most likely corrupted (lowest p_clean_<lang>);
- ``status_<status>``: the first pairs in input order that ended with that status.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from pairsift.models.records import Status

GALLERY_SIZES = {"noisy": 24, "borderline_dropped": 24, "borderline_kept": 24, "random_kept": 24}
TRANSLATION_GALLERY = 12
STATUS_EXAMPLES = 8
# the audit columns a gallery row carries (per language: label, p_clean, reason, caption)
ROW_COLUMNS = ["source_shard", "key", "index", "status", "error", "label", "p_clean",
               "uncertainty", "loss", "reason", "caption", "is_noisy", "noise_kind"]
LANGUAGE_COLUMNS = ("label_{}", "p_clean_{}", "reason_{}", "caption_{}")


def columns_for(langs: list[str]) -> list[str]:
    return ROW_COLUMNS + [c.format(lang) for lang in langs for c in LANGUAGE_COLUMNS]


def pair_hash(shard: str, key: str, seed: int) -> int:
    digest = hashlib.blake2b(f"{seed}\0{shard}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1  # fits int64


@dataclass
class GalleryCandidates:
    """Per gallery, its best rows so far: ``(sort key, row)``, at most the gallery's limit."""

    galleries: dict[str, list[tuple[tuple, dict[str, Any]]]] = field(default_factory=dict)

    def __add__(self, other: GalleryCandidates) -> GalleryCandidates:
        merged: dict[str, list[tuple[tuple, dict[str, Any]]]] = {}
        for name in sorted(set(self.galleries) | set(other.galleries)):
            both = self.galleries.get(name, []) + other.galleries.get(name, [])
            merged[name] = sorted(both, key=lambda item: item[0])[: gallery_limit(name)]
        return GalleryCandidates(merged)

    @property
    def pairs(self) -> int:
        return sum(len(rows) for rows in self.galleries.values())

    def rows(self, name: str) -> list[dict[str, Any]]:
        return [row for _, row in self.galleries.get(name, [])]

    def to_dict(self) -> dict[str, Any]:
        return {name: [row for _, row in rows] for name, rows in self.galleries.items()}


def gallery_limit(name: str) -> int:
    if name.startswith("translation_"):
        return TRANSLATION_GALLERY
    if name.startswith("status_"):
        return STATUS_EXAMPLES
    return GALLERY_SIZES[name]


def _floats(table: pa.Table, name: str) -> np.ndarray:
    if name not in table.column_names:
        return np.full(table.num_rows, np.nan)
    values = table.column(name).to_numpy(zero_copy_only=False)
    return np.asarray(values, dtype=np.float64)


def _strings(table: pa.Table, name: str) -> list[Any]:
    return table.column(name).to_pylist() if name in table.column_names else [None] * table.num_rows


def _smallest(order: np.ndarray, mask: np.ndarray, limit: int) -> np.ndarray:
    """Row indices of ``mask``'s rows in ``order`` (a lexsort result), the first ``limit``."""
    return order[mask[order]][:limit]


def file_candidates(table: pa.Table, keep_labels: set[str], langs: list[str],
                    seed: int) -> GalleryCandidates:
    """One audit file's candidates for every gallery (see the module doc)."""
    n = table.num_rows
    if n == 0:
        return GalleryCandidates()
    shards, keys = _strings(table, "source_shard"), _strings(table, "key")
    tie = np.asarray([pair_hash(s, k, seed) for s, k in zip(shards, keys, strict=True)], dtype=np.int64)
    labels = np.asarray([label or "" for label in _strings(table, "label")], dtype=object)
    status = np.asarray(_strings(table, "status"), dtype=object)
    p_clean = np.nan_to_num(_floats(table, "p_clean"), nan=0.0)
    kept = np.isin(labels, list(keep_labels))
    noisy = labels == "noisy"
    picks: dict[str, tuple[np.ndarray, np.ndarray]] = {  # gallery: (rows, their sort values)
        "noisy": _by(p_clean, tie, noisy, GALLERY_SIZES["noisy"]),
        "borderline_dropped": _by(-p_clean, tie, noisy, GALLERY_SIZES["borderline_dropped"]),
        "borderline_kept": _by(p_clean, tie, kept, GALLERY_SIZES["borderline_kept"]),
        "random_kept": _by(np.zeros(n), tie, kept, GALLERY_SIZES["random_kept"]),
    }
    for lang in langs:
        has = np.asarray([bool(v) for v in _strings(table, f"label_{lang}")], dtype=bool)
        p_lang = np.nan_to_num(_floats(table, f"p_clean_{lang}"), nan=1.0)
        picks[f"translation_{lang}"] = _by(p_lang, tie, has, TRANSLATION_GALLERY)
    index = np.nan_to_num(_floats(table, "index"), nan=0.0)
    shard_rank = np.unique(np.asarray(shards, dtype=str), return_inverse=True)[1]
    for name in sorted(set(status.tolist()) - {Status.OK.value}):  # input order: shard, index
        picks[f"status_{name}"] = _by(index, tie, status == name, STATUS_EXAMPLES, shard_rank)
    return GalleryCandidates(_rows_of(table, picks, langs, shards, tie))


def _rows_of(table: pa.Table, picks: dict[str, tuple[np.ndarray, np.ndarray]], langs: list[str],
             shards: list[Any], tie: np.ndarray) -> dict[str, list[tuple[tuple, dict[str, Any]]]]:
    """Each gallery's picked rows with their merge keys (shard first for status examples:
    input order across files)."""
    wanted = [c for c in columns_for(langs) if c in table.column_names]
    out: dict[str, list[tuple[tuple, dict[str, Any]]]] = {}
    for name, (rows, values) in picks.items():
        if rows.size == 0:
            continue
        chosen = [_finite(row) for row in table.select(wanted).take(pa.array(rows)).to_pylist()]
        first = [str(shards[i]) if name.startswith("status_") else "" for i in rows.tolist()]
        out[name] = [((f, float(v), int(tie[i])), row) for f, v, i, row
                     in zip(first, values.tolist(), rows.tolist(), chosen, strict=True)]
    return out


def _finite(row: dict[str, Any]) -> dict[str, Any]:
    """A row with NaN floats as None (gallery.json is plain JSON; NaN never equals itself)."""
    return {k: None if isinstance(v, float) and v != v else v for k, v in row.items()}


def _by(value: np.ndarray, tie: np.ndarray, mask: np.ndarray, limit: int,
        first: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``limit`` rows of ``mask`` of smallest (``first``, ``value``, ``tie``), and their values."""
    order = np.lexsort((tie, value) if first is None else (tie, value, first))
    rows = _smallest(order, mask, limit)
    return rows, value[rows]
