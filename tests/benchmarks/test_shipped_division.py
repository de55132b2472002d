"""The benchmark's "pairsift" rows are `pairsift run`'s division, pair for pair."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import torch

from pairsift.benchmarks.quality_runs import setting_shards, shipped_division
from pairsift.models.pairdata import PairEmbeddings
from pairsift.pipeline.embedded import EmbeddedShard


def _labelled_audit(run: Path) -> pl.DataFrame:
    audit = pl.concat([pl.read_parquet(p) for p in sorted((run / "audit").glob("*.parquet"))],
                      how="diagonal_relaxed")
    return audit.filter(pl.col("label").is_not_null()).sort(["source_shard", "index"])


def _run_shards(run: Path, audit: pl.DataFrame) -> list[EmbeddedShard]:
    """The run's own pass-1 vectors of its labelled pairs, shard by shard."""
    shards = []
    for path in sorted((run / "embeddings").glob("*.parquet")):
        labelled = set(audit.filter(pl.col("source_shard") == path.stem)["key"].to_list())
        rows = pl.read_parquet(path).filter(pl.col("key").is_in(labelled)).sort("index")
        if rows.height == 0:
            continue
        shards.append(EmbeddedShard(
            path.stem, rows["key"].to_list(),
            np.asarray(rows["image_emb"].to_list(), dtype=np.float32),
            np.asarray(rows["text_emb"].to_list(), dtype=np.float32),
        ))
    return shards


def test_benchmark_row_labels_every_pair_as_pairsift_run_does(
    finished_run: Path, run_config, e2e_threads: int
) -> None:
    audit = _labelled_audit(finished_run)
    shards = _run_shards(finished_run, audit)
    assert len(shards) == 3 and sum(len(s.keys) for s in shards) == audit.height == 60
    previous = torch.get_num_threads()
    torch.set_num_threads(e2e_threads)  # as the run trained its heads
    try:
        row = shipped_division(shards, run_config())
    finally:
        torch.set_num_threads(previous)
    assert row.labels.key == audit["key"].to_list()
    assert row.labels.label.tolist() == audit["label"].to_list()
    # the audit rounds its floats to 6 decimals
    np.testing.assert_allclose(row.labels.p_clean, audit["p_clean"].to_numpy(), atol=1e-6)
    np.testing.assert_allclose(row.labels.columns["soft_label"], audit["soft_label"].to_numpy(),
                               atol=1e-6)
    assert len(set(row.labels.label.tolist())) >= 2  # a division, not a constant


def test_setting_shards_split_in_row_order() -> None:
    rng = np.random.default_rng(0)
    data = PairEmbeddings(rng.normal(size=(25, 4)).astype(np.float32),
                          rng.normal(size=(25, 3)).astype(np.float32), {})
    shards = setting_shards(data, shard_size=10)
    assert [s.name for s in shards] == ["00000", "00001", "00002"]
    assert [len(s.keys) for s in shards] == [10, 10, 5]
    np.testing.assert_array_equal(np.concatenate([s.image for s in shards]), data.image)
    keys = [k for s in shards for k in s.keys]
    assert keys == sorted(keys) and len(set(keys)) == 25


def test_target_language_vectors_reach_the_shipped_division(tmp_path: Path, tiny_cfg) -> None:
    from pairsift.pipeline.embedded import label_embedded

    rng = np.random.default_rng(3)
    n = 120
    z = rng.normal(size=(n, 8))
    image = z @ rng.normal(size=(8, 24)) + 0.2 * rng.normal(size=(n, 24))
    text = z @ rng.normal(size=(8, 16)) + 0.2 * rng.normal(size=(n, 16))
    spanish = z @ rng.normal(size=(8, 12)) + 0.2 * rng.normal(size=(n, 12))
    text[: n // 3] = text[rng.permutation(n // 3)]  # some caption noise
    shard = EmbeddedShard("00000", [f"{i:04d}" for i in range(n)], image.astype(np.float32),
                          text.astype(np.float32), {"es": spanish.astype(np.float32)})
    cfg = tiny_cfg()
    assert cfg.translate.target_langs == []
    labels = label_embedded([shard], cfg, str(tmp_path / "out"))
    scores = pl.read_parquet(tmp_path / "out" / "scores" / "00000.parquet")
    assert {"similarity_es", "belief_dual", "uncertainty_dual"} <= set(scores.columns)
    assert len(labels.label) == n and set(labels.label.tolist()) <= {"clean", "hard", "noisy"}
    # the benchmark's row: its fit heads and OUT/model both have the Spanish view
    cfg.train.final_min_pairs = 2
    row = shipped_division([shard], cfg)
    assert row.fit_heads.languages == ["es"] and row.final_heads.languages == ["es"]
