"""Retrieval/detection metrics and the embeddings parquet reader."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pairsift.models.metrics import detection_auc, kept_precision_recall, recall_at_k
from pairsift.models.pairdata import load_embeddings_parquet


def test_recall_hand_example() -> None:
    img = np.random.default_rng(0).normal(size=(3, 4))
    txt = img[[0, 2, 1]]  # captions 1 and 2 swapped
    out = recall_at_k(img, txt, ks=(1, 3))
    assert out["i2t_r1"] == pytest.approx(100 / 3) and out["t2i_r1"] == pytest.approx(100 / 3)
    assert out["i2t_r3"] == 100.0 and out["t2i_r3"] == 100.0
    assert out["rsum"] == pytest.approx(2 * (100 / 3) + 200)
    assert recall_at_k(img, img)["rsum"] == 600.0


def test_recall_several_captions_per_image() -> None:
    img = np.eye(2)
    txt = np.array([[0, 1.0], [1.0, 0.1], [0.1, 1.0], [1.0, 0]])
    owner = np.array([1, 0, 0, 0])  # caption 2 points at image 1 but is filed under image 0
    out = recall_at_k(img, txt, ks=(1,), txt_to_img=owner)
    assert out["i2t_r1"] == 100.0  # each image's best caption is one of its own
    assert out["t2i_r1"] == 75.0  # caption 2 retrieves the other image
    with pytest.raises(ValueError):
        recall_at_k(img, txt)


def test_detection_and_kept_metrics() -> None:
    noisy = np.array([0, 0, 1, 1], dtype=bool)
    assert detection_auc(noisy, np.array([0.1, 0.2, 0.8, 0.9])) == 1.0
    assert detection_auc(noisy, np.array([0.9, 0.8, 0.2, 0.1])) == 0.0
    with pytest.raises(ValueError):
        detection_auc(np.zeros(3, bool), np.arange(3))
    pr = kept_precision_recall(np.array([1, 1, 1, 0], bool), noisy)
    assert pr["precision"] == pytest.approx(2 / 3) and pr["recall"] == 1.0


def _fsl(arr: np.ndarray) -> pa.Array:
    flat = pa.array(arr.astype(np.float16).ravel(), type=pa.float16())
    return pa.FixedSizeListArray.from_arrays(flat, arr.shape[1])


def test_load_embeddings_parquet(tmp_path) -> None:
    rng = np.random.default_rng(0)
    paths = []
    for shard in range(2):
        n = 4
        img, txt, pt, ml = (rng.normal(size=(n, d)) for d in (6, 5, 3, 3))
        table = pa.table(
            {
                "key": [f"s{shard}_{i}" for i in range(n)],
                "status": ["ok", "decode_error", "ok", "ok"],
                "image_emb": _fsl(img),
                "text_emb": _fsl(txt),
                "text_emb_pt": _fsl(pt),
                "text_emb_ml": _fsl(ml),
            }
        )
        path = str(tmp_path / f"{shard:05d}.parquet")
        pq.write_table(table, path)
        paths.append(path)
    data = load_embeddings_parquet(paths)
    assert len(data) == 6 and data.keys[:3] == ["s0_0", "s0_2", "s0_3"]
    assert data.image.shape == (6, 6) and data.image.dtype == np.float32
    assert data.languages == ["pt"] and data.text_src_ml.shape == (6, 3)
    with pytest.raises(ValueError):
        load_embeddings_parquet([])
    pq.write_table(pa.table({"key": ["a"], "status": ["ok"]}), str(tmp_path / "bad.parquet"))
    with pytest.raises(ValueError, match="missing column"):
        load_embeddings_parquet([str(tmp_path / "bad.parquet")])
