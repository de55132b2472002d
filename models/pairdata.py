"""Embedded pairs as matrices, and the reader for the pipeline's OUT/embeddings parquet."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class PairEmbeddings:
    """Raw tower embeddings of N pairs; row i of every matrix belongs to pair i.

    ``text_tgt`` maps a target language to its captions embedded by the multilingual tower;
    ``text_src_ml`` is the English caption embedded by that same tower (translation
    consistency, NRF).
    """

    image: np.ndarray
    text: np.ndarray
    text_tgt: dict[str, np.ndarray] = field(default_factory=dict)
    text_src_ml: np.ndarray | None = None
    keys: list[str] | None = None

    def __post_init__(self) -> None:
        n = self.image.shape[0]
        checks = {"image": self.image, "text": self.text}
        checks.update({f"text_tgt[{k}]": v for k, v in self.text_tgt.items()})
        if self.text_src_ml is not None:
            checks["text_src_ml"] = self.text_src_ml
        for name, arr in checks.items():
            if arr.ndim != 2 or arr.shape[0] != n:
                raise ValueError(f"{name} must be [{n}, dim], got {arr.shape}")
        if self.keys is not None and len(self.keys) != n:
            raise ValueError(f"keys has {len(self.keys)} entries for {n} pairs")

    def __len__(self) -> int:
        return int(self.image.shape[0])

    @property
    def languages(self) -> list[str]:
        return sorted(self.text_tgt)

    def subset(self, rows: np.ndarray) -> PairEmbeddings:
        return PairEmbeddings(
            image=self.image[rows],
            text=self.text[rows],
            text_tgt={k: v[rows] for k, v in self.text_tgt.items()},
            text_src_ml=None if self.text_src_ml is None else self.text_src_ml[rows],
            keys=None if self.keys is None else [self.keys[i] for i in rows],
        )

    def check_finite(self) -> None:
        for name, arr in [
            ("image", self.image),
            ("text", self.text),
            *[(f"text_tgt[{k}]", v) for k, v in self.text_tgt.items()],
        ]:
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"{name} embeddings contain NaN or inf")


def _matrix(column: object, name: str) -> np.ndarray:
    """Fixed-size (or plain) list column → [n, d] float32."""
    import pyarrow as pa

    col = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if col.null_count:
        raise ValueError(f"column {name} has null embeddings among ok rows")
    if len(col) == 0:
        return np.zeros((0, 0), dtype=np.float32)
    if pa.types.is_fixed_size_list(col.type):
        dim = col.type.list_size
    else:
        lengths = np.asarray(col.value_lengths())
        if lengths.min() != lengths.max():
            raise ValueError(f"column {name} holds embeddings of different lengths")
        dim = int(lengths[0])
    values = np.asarray(col.flatten().to_numpy(zero_copy_only=False), dtype=np.float32)
    return values.reshape(len(col), dim)


def _read_parquet(path: str) -> object:
    """Through fsspec (any output path) and polars: pyarrow's parquet reader rejects null
    fixed-size-list entries (error rows)."""
    from pairsift.models.storage.tables import read_table

    return read_table(path)


def load_embeddings_parquet(paths: list[str]) -> PairEmbeddings:
    """Rows with status == "ok" of OUT/embeddings/*.parquet, in the order given.

    Columns: ``key``, ``status``, ``image_emb``, ``text_emb`` and optionally
    ``text_emb_<lang>`` / ``text_emb_ml`` (float16 fixed-size lists). A target language counts
    only when every ok row has it.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if not paths:
        raise ValueError("no embeddings parquet files given")
    tables = []
    for path in paths:
        table = _read_parquet(path)
        missing = {"key", "status", "image_emb", "text_emb"} - set(table.column_names)
        if missing:
            raise ValueError(f"{path}: missing column(s) {sorted(missing)}")
        tables.append(table.filter(pc.equal(table.column("status"), "ok")))
    table = pa.concat_tables(tables, promote_options="default")
    if table.num_rows == 0:
        raise ValueError("no rows with status 'ok' in the embeddings files")
    tgt: dict[str, np.ndarray] = {}
    for name in table.column_names:
        if name.startswith("text_emb_") and name != "text_emb_ml":
            if table.column(name).null_count == 0:
                tgt[name[len("text_emb_") :]] = _matrix(table.column(name), name)
    ml = None
    if "text_emb_ml" in table.column_names and table.column("text_emb_ml").null_count == 0:
        ml = _matrix(table.column("text_emb_ml"), "text_emb_ml")
    data = PairEmbeddings(
        image=_matrix(table.column("image_emb"), "image_emb"),
        text=_matrix(table.column("text_emb"), "text_emb"),
        text_tgt=dict(sorted(tgt.items())),
        text_src_ml=ml,
        keys=[str(k) for k in table.column("key").to_pylist()],
    )
    data.check_finite()
    return data
