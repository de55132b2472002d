"""The dedup job, deterministic sampling, and reading only the sampled vectors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from apache_beam.options.pipeline_options import PipelineOptions

from pairsift.models.config import PairsiftConfig
from pairsift.models.noise.neighbour_index import anchor_rows as fit_sample
from pairsift.models.storage.tables import read_table, write_rows
from pairsift.pipeline.dedup import run_dedup
from pairsift.pipeline.fit import load_sample_vectors
from pairsift.pipeline.layout import RunLayout


def test_fit_sample_is_deterministic_and_order_independent() -> None:
    keys = [f"k{i}" for i in range(100)]
    chosen = fit_sample(keys, 10, seed=3)
    assert len(chosen) == 10 and np.all(np.diff(chosen) > 0)
    assert chosen.tolist() == fit_sample(keys, 10, seed=3).tolist()
    reversed_keys = keys[::-1]
    again = fit_sample(reversed_keys, 10, seed=3)
    assert sorted(reversed_keys[i] for i in again) == sorted(keys[i] for i in chosen)
    assert fit_sample(keys, 500, seed=3).tolist() == list(range(100))


def _shard_rows(shard: str, n: int, dim: int, failed: set[int], image: str | None = None) -> list[dict]:
    rows = []
    for i in range(n):
        row = {"key": f"{shard}_{i}", "source_shard": shard, "index": i,
               "sha256": image or f"{shard}{i}", "caption_sha256": "c",
               "status": "decode_error" if i in failed else "ok"}
        if i not in failed:  # vector encodes (shard, index) so the test can check alignment
            row["image_emb"] = np.full(dim, int(shard) * 100 + i, dtype=np.float16)
            row["text_emb"] = np.full(dim, -(int(shard) * 100 + i), dtype=np.float16)
        rows.append(row)
    return rows


def _dedup(layout: RunLayout, **changes) -> dict:  # noqa: ANN003
    cfg = PairsiftConfig()
    for name, value in changes.items():
        if name == "max_fit_pairs":
            cfg.limits.max_fit_pairs = value
        else:
            setattr(cfg, name, value)
    return run_dedup(cfg, layout, PipelineOptions([]))


def test_dedup_marks_later_copies_across_shards_and_samples_the_rest(tmp_path: Path) -> None:
    layout = RunLayout(str(tmp_path))
    shard1 = _shard_rows("1", 5, 4, failed={2})
    shard1[4]["sha256"] = "0" + "1"  # the same image and caption as pair 0_1: a copy
    write_rows(layout.embeddings_file("00001"), shard1, row_group_size=2)
    shard0 = _shard_rows("0", 4, 4, failed=set())
    shard0[3]["sha256"] = "01"  # a copy of 0_1 within its own shard
    write_rows(layout.embeddings_file("00000"), shard0, row_group_size=2)
    counts = _dedup(layout)
    assert counts == {"embedded_pairs": 8, "duplicates": 2}
    assert read_table(layout.duplicates_file("00000")).column("key").to_pylist() == ["0_3"]
    assert read_table(layout.duplicates_file("00001")).column("key").to_pylist() == ["1_4"]
    sample = read_table(layout.fit_sample)
    assert sample.column("key").to_pylist() == ["0_0", "0_1", "0_2", "1_0", "1_1", "1_3"]
    pairs = load_sample_vectors(layout, sample.take([5, 1, 3]))  # any order: kept
    assert pairs.matrices["image_emb"][:, 0].tolist() == [103.0, 1.0, 100.0]
    assert pairs.matrices["text_emb"][:, 0].tolist() == [-103.0, -1.0, -100.0]


def test_dedup_sample_is_capped_by_rank_and_off_keeps_every_copy(tmp_path: Path) -> None:
    for name, changes in (("capped", {"max_fit_pairs": 3}), ("off", {"dedup": False})):
        layout = RunLayout(str(tmp_path / name))
        write_rows(layout.embeddings_file("00000"), _shard_rows("0", 6, 2, set(), image="same"))
        counts = _dedup(layout, **changes)
        keys = read_table(layout.fit_sample).column("key").to_pylist()
        if name == "off":
            assert counts["duplicates"] == 0 and len(keys) == 6
        else:  # every pair but the first is a copy; the sample is the one unique pair
            assert counts["duplicates"] == 5 and keys == ["0_0"]
    layout = RunLayout(str(tmp_path / "cap"))
    write_rows(layout.embeddings_file("00000"), _shard_rows("0", 50, 2, set()))
    _dedup(layout, max_fit_pairs=7)
    keys = read_table(layout.fit_sample).column("key").to_pylist()
    expected = [f"0_{i}" for i in fit_sample([f"0_{i}" for i in range(50)], 7, seed=0)]
    assert keys == expected  # the same pairs the in-memory rank picks


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
