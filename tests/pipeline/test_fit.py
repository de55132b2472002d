"""Fit-step helpers: dedup, deterministic sampling, and reading only the sampled vectors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from pairsift.models.storage.tables import write_rows
from pairsift.pipeline.fit import find_duplicates, fit_sample, load_embedded, load_ids
from pairsift.pipeline.layout import RunLayout


def test_find_duplicates_marks_later_copies_only() -> None:
    ids = pa.table({"sha256": ["a", "b", "a", "a"], "caption_sha256": ["x", "x", "x", "y"]})
    assert find_duplicates(ids).tolist() == [False, False, True, False]


def test_fit_sample_is_deterministic_and_order_independent() -> None:
    keys = [f"k{i}" for i in range(100)]
    chosen = fit_sample(keys, 10, seed=3)
    assert len(chosen) == 10 and np.all(np.diff(chosen) > 0)
    assert chosen.tolist() == fit_sample(keys, 10, seed=3).tolist()
    reversed_keys = keys[::-1]
    again = fit_sample(reversed_keys, 10, seed=3)
    assert sorted(reversed_keys[i] for i in again) == sorted(keys[i] for i in chosen)
    assert fit_sample(keys, 500, seed=3).tolist() == list(range(100))


def _shard_rows(shard: str, n: int, dim: int, failed: set[int]) -> list[dict]:
    rows = []
    for i in range(n):
        row = {"key": f"{shard}_{i}", "source_shard": shard, "index": i, "sha256": f"{shard}{i}",
               "caption_sha256": "c", "status": "decode_error" if i in failed else "ok"}
        if i not in failed:  # vector encodes (shard, index) so the test can check alignment
            row["image_emb"] = np.full(dim, int(shard) * 100 + i, dtype=np.float16)
            row["text_emb"] = np.full(dim, -(int(shard) * 100 + i), dtype=np.float16)
        rows.append(row)
    return rows


def test_load_embedded_reads_only_requested_rows_in_order(tmp_path: Path) -> None:
    layout = RunLayout(str(tmp_path))
    write_rows(layout.embeddings_file("00001"), _shard_rows("1", 5, 4, failed={2}))
    write_rows(layout.embeddings_file("00000"), _shard_rows("0", 4, 4, failed=set()))
    ids = load_ids(layout)
    assert ids.column("key").to_pylist() == ["0_0", "0_1", "0_2", "0_3", "1_0", "1_1", "1_3", "1_4"]
    picked = ids.take([6, 1, 4])
    pairs = load_embedded(picked)
    assert pairs.matrices["image_emb"][:, 0].tolist() == [103.0, 1.0, 100.0]
    assert pairs.matrices["text_emb"][:, 0].tolist() == [-103.0, -1.0, -100.0]


def test_run_refuses_divisions_that_need_all_scores_at_once() -> None:
    import pytest

    from pairsift.models.config import PairsiftConfig
    from pairsift.pipeline.run import check_division

    cfg = PairsiftConfig()
    check_division(cfg)
    cfg.division.method = "gmm"
    with pytest.raises(SystemExit, match="ranks all pairs at once"):
        check_division(cfg)
    cfg.division.method = "clip_score"
    with pytest.raises(SystemExit):
        check_division(cfg)
    cfg.division.similarity_threshold = 0.25
    check_division(cfg)


def test_shard_matrices_mask_missing_target_views() -> None:
    import pytest

    from pairsift.models.storage.tables import embedding_matrix, rows_to_table
    from pairsift.pipeline.score_pass import shard_matrices

    rows = [{"key": "a", "image_emb": np.ones(3), "text_emb_pt": np.full(3, 2.0)},
            {"key": "b", "image_emb": np.ones(3)}]
    table = rows_to_table(rows)
    with pytest.raises(ValueError, match="null embeddings"):
        embedding_matrix(table, "text_emb_pt")
    matrices, present = shard_matrices(table)
    assert matrices["text_emb_pt"].tolist() == [[2.0, 2.0, 2.0], [0.0, 0.0, 0.0]]
    assert present["text_emb_pt"].tolist() == [True, False]
    assert present["image_emb"].tolist() == [True, True]
