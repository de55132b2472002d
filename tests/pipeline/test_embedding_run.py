"""`pairsift run --embeddings`: precomputed vectors in clip-retrieval's layout go through the
shipped fit, score and noise fit; the audit, the keep-list and, with --input, the curated
shards come out."""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pairsift.benchmarks.from_embeddings import write_clip_layout
from pairsift.pipeline.io.readers import discover_shards, read_shard


def test_a_run_from_embeddings_writes_audit_and_keep_list(tmp_path: Path, run_config, pinned_run) -> None:
    write_clip_layout(tmp_path / "emb", 600, part_size=200, dim=64, noise=0.3)
    result = pinned_run(None, str(tmp_path / "out"), run_config(), embeddings=str(tmp_path / "emb"))
    audit = pl.read_parquet(tmp_path / "out" / "audit" / "*.parquet")
    meta = pl.read_parquet(tmp_path / "emb" / "metadata" / "*.parquet")
    assert sorted(audit["key"]) == sorted(meta["key"])  # one row per vector row
    assert {"url", "is_noisy", "caption", "label", "p_clean"} <= set(audit.columns)
    keep = pl.read_parquet(tmp_path / "out" / "keep" / "*.parquet")
    kept = audit.filter(pl.col("label").is_in(["clean", "hard"]))
    assert sorted(keep["key"]) == sorted(kept["key"]) and "url" in keep.columns
    assert result.summary["detection"]["detection_roc_auc"] > 0.9  # the synthetic noise is found
    assert (tmp_path / "out" / "model" / "model.safetensors").exists()
    before = {p: p.read_bytes() for p in (tmp_path / "out" / "audit").iterdir()}
    pinned_run(None, str(tmp_path / "out"), run_config(), embeddings=str(tmp_path / "emb"))
    assert before == {p: p.read_bytes() for p in (tmp_path / "out" / "audit").iterdir()}


def test_with_the_image_shards_too_the_kept_pairs_are_curated(
    noisy_input: Path, tmp_path: Path, run_config, pinned_run
) -> None:
    samples = [s for shard in discover_shards(str(noisy_input)) for s in read_shard(shard)]
    keys = [s.key for s in samples if s.error_status is None]
    rng = np.random.default_rng(0)
    root = tmp_path / "emb"
    for folder in ("img_emb", "text_emb", "metadata"):
        (root / folder).mkdir(parents=True)
    vectors = rng.standard_normal((len(keys), 32)).astype(np.float16)
    np.save(root / "img_emb" / "img_emb_0.npy", vectors)
    np.save(root / "text_emb" / "text_emb_0.npy", vectors + 0.1 * rng.standard_normal(vectors.shape).astype(np.float16))
    pq.write_table(pa.table({"key": keys}), root / "metadata" / "metadata_0.parquet")
    out = tmp_path / "out"
    pinned_run(str(noisy_input), str(out), run_config(), embeddings=str(root))
    keep = set(pl.read_parquet(out / "keep" / "*.parquet")["key"])
    written = set()
    for path in (out / "shards").glob("*.tar"):
        with tarfile.open(path) as tar:
            written |= {m.name.split(".", 1)[0] for m in tar.getmembers()}
    assert written == keep and keep  # each kept pair is curated from its image shard


def test_a_folder_without_the_layout_is_one_clear_error(tmp_path: Path, run_config) -> None:
    from pairsift.pipeline.run import run

    with pytest.raises(FileNotFoundError, match="img_emb/img_emb_N.npy"):
        run(None, str(tmp_path / "out"), run_config(), embeddings=str(tmp_path))


def test_input_keys_that_match_no_embedding_are_an_error(
    noisy_input: Path, tmp_path: Path, run_config, pinned_run
) -> None:
    write_clip_layout(tmp_path / "emb", 60, part_size=60, dim=32)
    meta = tmp_path / "emb" / "metadata" / "metadata_0.parquet"
    table = pq.read_table(meta)
    keys = pa.array([f"other-{k}" for k in table.column("key").to_pylist()])
    pq.write_table(table.set_column(0, "key", keys), meta)  # none matches an input key
    with pytest.raises(SystemExit, match="none of the 64 input pairs has an embedding"):
        pinned_run(str(noisy_input), str(tmp_path / "out"), run_config(), embeddings=str(tmp_path / "emb"))
