"""`pairsift run --embeddings DIR`: start from precomputed embeddings (clip-retrieval's
layout) and skip pass 1.

The stages: ``import`` writes each part as pass 1's output; ``fit``, ``score`` and
``mixture`` are `pairsift run`'s own; ``label`` writes each part's audit and its keep-list
(``OUT/keep/NNNNN.parquet``: the kept pairs' ids, label and scores, for filtering a dataset
without its pixels, the DataComp way); with ``--input`` too, ``curate`` writes curated shards
from the image shards, each pair labelled by its key; then the final model and the summary.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
import pyarrow as pa
from apache_beam.options.pipeline_options import PipelineOptions

from pairsift.models.config import PairsiftConfig
from pairsift.models.noise.fit import NoiseFit
from pairsift.models.storage.atomic import exists, list_files, read_json
from pairsift.models.storage.tables import read_table, write_rows
from pairsift.pipeline.audit_schema import audit_schema, without
from pairsift.pipeline.io.clip_retrieval import EmbeddingPart, part_rows
from pairsift.pipeline.io.readers import InputShard, read_shard
from pairsift.pipeline.io.shard_writer import write_shard
from pairsift.pipeline.layout import RunLayout
from pairsift.pipeline.options import new_pipeline, run_pipeline
from pairsift.pipeline.pass2 import CurateShard, ShardLabels, output_name, shard_stats
from pairsift.transforms.curate import finish_audit_row

log = logging.getLogger(__name__)

# what a keep-list row holds: the ids a dataset is filtered by, and the division's verdict
KEEP_COLUMNS = ("key", "source_shard", "uid", "url", "label", "p_clean", "uncertainty",
                "soft_label", "loss", "similarity")


def parts_schema(parts: list[EmbeddingPart], cfg: PairsiftConfig, layout: RunLayout) -> pa.Schema:
    """The audit schema of a run from embeddings (its parts stand in for input shards)."""
    return audit_schema([layout.embeddings_file(p.name) for p in parts],
                        [layout.scores_file(p.name) for p in parts], cfg.translate.target_langs)


def import_parts(parts: list[EmbeddingPart], layout: RunLayout) -> None:
    """Each part as ``OUT/embeddings/NNNNN.parquet`` (a part already written is skipped)."""
    for i, part in enumerate(parts):
        path = layout.embeddings_file(part.name)
        if exists(path):
            continue
        rows = part_rows(part)
        write_rows(path, rows)
        log.info("import: part %s, %d pairs (%d/%d)", part.name, len(rows), i + 1, len(parts))


def label_parts(parts: list[EmbeddingPart], cfg: PairsiftConfig, layout: RunLayout) -> None:
    """Each part's audit (one row per pair) and keep-list, through pass 2's labelling."""
    fit = NoiseFit.from_dict(read_json(layout.noise_fit))
    schema = parts_schema(parts, cfg, layout)
    for part in parts:
        if exists(layout.keep_file(part.name)):
            continue
        base = {r["key"]: r for r in read_table(layout.embeddings_file(part.name),
                                                skip_embeddings=True).to_pylist()}
        labels = ShardLabels.of(layout, part.name, fit, cfg)
        audit = [
            finish_audit_row(row, key, part.name,
                             bool(labels.rows.get(key, {}).get("duplicate", False)), labels.per_key.get(key))
            for key, row in base.items()
        ]
        write_rows(layout.audit_file(part.name), audit, schema=schema)
        keep_schema = pa.schema([schema.field(c) for c in KEEP_COLUMNS if c in schema.names])
        kept = [row for row in audit if row.get("label") in cfg.output.keep_labels]
        write_rows(layout.keep_file(part.name), kept, schema=keep_schema, extra=False)


class CurateByKey(CurateShard):
    """Pass 2 for a run from embeddings: an input shard's pairs take the labels their keys
    got in the audit (every part's audit is loaded once per worker, key → row)."""

    def setup(self) -> None:
        self.labelled: dict[str, dict[str, Any]] = {}
        for path in list_files(self.layout.audit, ".parquet"):
            for row in read_table(path).to_pylist():
                self.labelled.setdefault(row["key"], row)

    def process(self, element: tuple[int, InputShard]) -> Iterator[str]:
        index, shard = element
        name = output_name(index)
        if exists(self.layout.shard_stats(name)):
            yield name
            return
        kept, seen = [], []
        for sample in read_shard(shard):
            row = self.labelled.get(sample.key)
            seen.append(row or {"status": "unlabelled", "label": None})
            if row and row.get("label") in self.cfg.output.keep_labels and sample.image_bytes is not None:
                # the curated row hashes the image it ships (the audit has only a fingerprint)
                row = {**row, "sha256": sample.image_sha256}
                kept.append(self._shard_sample(sample.image_bytes, sample.image_format, row,
                                               list(self.cfg.translate.target_langs)))
        write_shard(self.layout.shards, name, kept, stats=shard_stats(shard.name, seen, len(kept)),
                    schema=without(self.schema, "index"), count_by="label")
        yield name


def curate_by_key(shards: list[InputShard], cfg: PairsiftConfig, layout: RunLayout,
                  options: PipelineOptions, schema_parts: list[EmbeddingPart]) -> dict[str, int]:
    schema = parts_schema(schema_parts, cfg, layout)
    pipeline = new_pipeline(options, "curate")
    (
        pipeline
        | "InputShards" >> beam.Create(list(enumerate(shards)))
        | "Spread" >> beam.Reshuffle()
        | "CurateByKey" >> beam.ParDo(CurateByKey(layout, cfg, schema))
    )
    return run_pipeline(pipeline, "curate", must_exist=[layout.shard_stats(output_name(i))
                                                       for i in range(len(shards))])


def check_keys_matched(shards: list[InputShard], layout: RunLayout) -> None:
    """An --input none of whose keys has an embedding is a mistake (another key column, other
    shards), not an empty result: say so instead of finishing with nothing curated."""
    stats = [read_json(layout.shard_stats(output_name(i))) for i in range(len(shards))]
    pairs = sum(s["count"] for s in stats)
    unlabelled = sum(s["status_dict"].get("unlabelled", 0) for s in stats)
    if pairs and unlabelled == pairs:
        raise SystemExit(f"none of the {pairs} input pairs has an embedding: their keys match no "
                         "key of the embeddings' metadata (--key-column picks the input's key)")
    if unlabelled:
        log.warning("curate: %d of %d input pairs have no embedding, so no label; not curated",
                    unlabelled, pairs)
