"""The fit step: one process, on a bounded sample of vectors.

Reads the vectors of the dedup job's sample (at most ``limits.max_fit_pairs`` unique pairs,
pipeline/dedup.py) from OUT/embeddings, trains the projection heads with the robust trainer
on them, and freezes a scoring state (heads + fixed negative bank) that the score pass
applies to every pair in parallel. Its memory follows the sample, never the dataset.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pairsift.models.config import PairsiftConfig
from pairsift.models.records import is_embedding_column
from pairsift.models.storage.atomic import exists, read_json, write_json
from pairsift.models.storage.tables import embedding_matrix, read_rows, read_table, write_table
from pairsift.pipeline.layout import RunLayout
from pairsift.pipeline.progress import StageProgress

if TYPE_CHECKING:
    from pairsift.models.pairdata import PairEmbeddings
    from pairsift.models.training.epoch_division import NeighbourScores

log = logging.getLogger(__name__)
CONSISTENCY_ROW_GROUP = 65_536  # the score pass reads its shard's rows by row-group statistics

@dataclass
class EmbeddedPairs:
    """Embedded pairs: their ids plus one float32 matrix per embedding column, row-aligned."""

    ids: pa.Table
    matrices: dict[str, np.ndarray]

    def __len__(self) -> int:
        return self.ids.num_rows


def embedding_columns(schema_names: list[str]) -> list[str]:
    return [n for n in schema_names if is_embedding_column(n)]


def load_sample_vectors(layout: RunLayout, sample: pa.Table) -> EmbeddedPairs:
    """Vectors of exactly the rows of ``sample`` (columns ``source_shard`` and ``row``: the
    row in that shard's embeddings file), in its order. Only the row groups holding them are
    read, one file at a time: memory follows the sample, not the dataset. A vector column
    missing for any sampled pair (a target language some pairs lack) is left out."""
    shards = np.asarray(sample.column("source_shard").to_pylist(), dtype=object)
    rows = np.asarray(sample.column("row").to_numpy(zero_copy_only=False), dtype=np.int64)
    parts: dict[str, list[np.ndarray]] = {}
    order: list[np.ndarray] = []
    complete: set[str] | None = None
    for shard in sorted(set(shards.tolist())):
        positions = np.flatnonzero(shards == shard)
        positions = positions[np.argsort(rows[positions], kind="stable")]
        table = read_rows(layout.embeddings_file(shard), rows[positions], embeddings_only=True)
        names = table.column_names
        usable = {c for c in names if table.column(c).null_count == 0}
        complete = usable if complete is None else complete & usable
        for column in names:
            parts.setdefault(column, []).append(embedding_matrix(table, column, fill_null=True))
        order.append(positions)
    if not order:
        return EmbeddedPairs(sample, {})
    placement = np.argsort(np.concatenate(order), kind="stable")
    matrices = {c: np.concatenate(parts[c])[placement] for c in sorted(complete or ())
                if len(parts[c]) == len(order)}
    return EmbeddedPairs(sample, matrices)


def encoder_aligned(spec: str, image_dim: int, text_dim: int) -> bool:
    """CLIP-style towers share a space, so the heads start as identity."""
    return spec.startswith(("open_clip:", "hf:")) and image_dim == text_dim


def to_pair_embeddings(pairs: EmbeddedPairs, langs: list[str]):
    from pairsift.models.pairdata import PairEmbeddings

    m = pairs.matrices
    return PairEmbeddings(
        image=m["image_emb"],
        text=m["text_emb"],
        text_tgt={lang: m[f"text_emb_{lang}"] for lang in langs if f"text_emb_{lang}" in m},
        text_src_ml=m["text_emb_ml"] if "text_emb_ml" in m and langs else None,
        keys=pairs.ids.column("key").to_pylist(),
    )


@dataclass
class FitPairs:
    """What the fit step and the final model train on: the sample's vectors, and whether the
    heads start as the identity (towers already aligned)."""

    data: PairEmbeddings
    identity_init: bool


def load_pairs(layout: RunLayout, sample: pa.Table, cfg: PairsiftConfig) -> FitPairs:
    """The vectors of ``sample`` (the dedup job's fit sample, or the final model's kept
    sample: both at most ``limits.max_fit_pairs`` rows, in input order)."""
    data = to_pair_embeddings(load_sample_vectors(layout, sample), list(cfg.translate.target_langs))
    aligned = encoder_aligned(cfg.encoder.spec, data.image.shape[1], data.text.shape[1])
    return FitPairs(data, aligned)


def save_model(directory: str, heads, cfg: PairsiftConfig, languages: list[str], trained_with: dict) -> None:
    """OUT/model (or `pairsift train --output`): the towers' specs + the trained heads."""
    from pairsift.models.encoders.factory import DEFAULT_MULTILINGUAL_SPEC
    from pairsift.models.training.retrieval import RetrievalConfig, save_retrieval_model

    config = RetrievalConfig(
        encoder_spec=cfg.encoder.spec,
        heads=dict(heads.config),
        image_size=cfg.encoder.image_size,
        multilingual_spec=(cfg.encoder.multilingual_spec or DEFAULT_MULTILINGUAL_SPEC) if languages else None,
        languages=list(languages),
        trained_with={"method": cfg.train.loss, "seed": cfg.seed, **trained_with},
    )
    save_retrieval_model(directory, heads, config)


def run_fit(cfg: PairsiftConfig, layout: RunLayout) -> dict:
    """Train heads and freeze the scoring state. Skipped when its completion marker exists."""
    from pairsift.models.threads import set_torch_threads
    from pairsift.models.training.epoch_division import neighbour_consistency
    from pairsift.models.training.heads import save_heads
    from pairsift.models.training.scoring import build_scoring_state, fold_of_keys
    from pairsift.models.training.trainer import train

    set_torch_threads(cfg.encoder.threads)
    done_path = layout.fit_done
    if exists(done_path):
        log.info("fit: already complete, skipping")
        return read_json(done_path)
    counts = read_json(layout.dedup_done)
    sample = read_table(layout.fit_sample)
    pairs = load_pairs(layout, sample, cfg)
    data, aligned = pairs.data, pairs.identity_init
    log.info(
        "fit: %d embedded pairs, %d duplicates, training heads on %d (identity init: %s)",
        counts["embedded_pairs"], counts["duplicates"], len(data), aligned,
    )
    # a pair's cross-fitting fold comes from its key, so the score pass finds the same heads
    assert data.keys is not None  # to_pair_embeddings carries the keys
    folds = fold_of_keys(data.keys, max(cfg.train.division_folds, 1))
    neighbours = neighbour_consistency(data, cfg, cfg.seed)
    with StageProgress("fit (train heads)", total=cfg.train.epochs, unit="epochs") as epochs:
        result = train(data, cfg, identity_init=aligned, progress=partial(_log_epoch, epochs),
                       folds=folds, neighbours=neighbours, divide_last=False)
    save_heads(result.heads, layout.heads)
    state = build_scoring_state(result.heads, data, cfg.train, cfg.seed)
    state.fold_heads = result.fold_heads
    state.save(layout.scoring_state)
    anchors = save_neighbours(neighbours, sample.select(["source_shard", "key"]), cfg, layout)
    save_translation_anchors(data, cfg, layout)
    save_model(layout.model, result.heads, cfg, sorted(data.text_tgt), {"fit_pairs": int(len(data))})
    info = {
        "embedded_pairs": counts["embedded_pairs"],
        "duplicates": counts["duplicates"],
        "fit_pairs": int(len(data)),
        "identity_init": aligned,
        "crossfit_folds": len(result.fold_heads),
        "consistency_anchors": anchors,
        # epoch timings stay in the log: every output but summary.json is the same bytes each run
        "history": [{k: v for k, v in e.items() if k != "seconds"} for e in result.history],
        "image_dim": int(data.image.shape[1]),
        "text_dim": int(data.text.shape[1]),
    }
    write_json(layout.train_info, info)
    write_json(done_path, info)
    return info


def save_neighbours(
    neighbours: NeighbourScores | None, sample: pa.Table, cfg: PairsiftConfig, layout: RunLayout
) -> int:
    """What the score pass reads instead of searching again (models/noise/neighbour_index.py):
    the anchors, each fit pair's consistency (OUT/fit/consistency.parquet, by shard), and the
    histogram of the caption-swapped pairs' consistency, the null the noise fit fuses with.
    Returns the number of anchors (0: consistency is off)."""
    from pairsift.models.noise.consistency import CONSISTENCY_RANGE
    from pairsift.models.noise.histogram import histogram

    if neighbours is None:
        return 0
    null_counts = histogram(neighbours.null[np.isfinite(neighbours.null)], *CONSISTENCY_RANGE,
                            cfg.consistency.bins)
    neighbours.index.save(layout.neighbours, {"null_counts": null_counts.tolist()})
    table = sample.append_column("consistency", pa.array(neighbours.observed, pa.float64()))
    order = pc.sort_indices(table, [("source_shard", "ascending")])
    write_table(layout.fit_consistency, table.take(order), row_group_size=CONSISTENCY_ROW_GROUP)
    probes = neighbours.index.probes
    log.info("fit: %d neighbour-consistency anchors, %s", len(neighbours.index),
             f"searched in {probes} IVF lists a query" if probes else "searched exactly")
    return len(neighbours.index)


def save_translation_anchors(data: PairEmbeddings, cfg: PairsiftConfig, layout: RunLayout) -> None:
    """Per target language, the fit pairs' (English, translation) anchors the score pass
    measures every translation's margin against (at most ``consistency.max_anchors``, drawn
    by key as the neighbour anchors are)."""
    from pairsift.models.noise.neighbour_index import anchor_rows
    from pairsift.models.noise.translation_margin import TranslationIndex

    if data.text_src_ml is None or data.keys is None:
        return
    rows = anchor_rows(data.keys, cfg.consistency.max_anchors, cfg.seed + 2)
    for lang, target in sorted(data.text_tgt.items()):
        index = TranslationIndex.build(data.text_src_ml[rows], target[rows],
                                       [data.keys[i] for i in rows], cfg.consistency.probes,
                                       cfg.seed + 3)
        index.save(layout.translation_anchors(lang))
        log.info("fit: %d %s translation-margin anchors", len(index), lang)


def _log_epoch(epochs: StageProgress, entry: dict) -> None:
    shown = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in entry.items()}
    log.info("fit: %s", shown)
    epochs.advance()
