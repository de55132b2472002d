"""`pairsift run --embeddings DIR`: start from precomputed embeddings (clip-retrieval's
layout) and skip pass 1.

The stages: ``import`` writes each part as pass 1's output (a Beam job, as ``label`` is); ``fit``, ``score`` and
``mixture`` are `pairsift run`'s own; ``label`` writes each part's audit and its keep-list
(``OUT/keep/NNNNN.parquet``: the kept pairs' ids, label and scores, for filtering a dataset
without its pixels, the DataComp way); with ``--input`` too, ``curate`` writes curated shards
from the image shards, each pair labelled by its key; then the final model and the summary.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Any

import apache_beam as beam
import pyarrow as pa
from apache_beam.options.pipeline_options import PipelineOptions

from pairsift.models.config import PairsiftConfig
from pairsift.models.noise.fit import NoiseFit
from pairsift.models.storage.atomic import exists, list_files, read_json
from pairsift.models.storage.tables import read_table, rows_to_table, write_rows
from pairsift.pipeline.audit_columns import ShardLabels
from pairsift.pipeline.audit_schema import audit_schema
from pairsift.pipeline.io.clip_retrieval import EmbeddingPart, part_rows
from pairsift.pipeline.io.readers import InputShard, read_shard
from pairsift.pipeline.io.shard_writer import write_shard
from pairsift.pipeline.kept_samples import KeptImage, kept_samples
from pairsift.pipeline.layout import RunLayout
from pairsift.pipeline.options import new_pipeline, run_pipeline
from pairsift.pipeline.pass1 import EMBEDDING_ROW_GROUP
from pairsift.pipeline.pass2 import CurateShard, forget_tally, output_name, shard_stats
from pairsift.transforms.curate import finish_audit_row

log = logging.getLogger(__name__)

# what a keep-list row holds: the ids a dataset is filtered by, and the division's verdict
KEEP_COLUMNS = ("key", "source_shard", "uid", "url", "label", "p_clean", "uncertainty",
                "soft_label", "loss", "similarity")


def parts_schema(parts: list[EmbeddingPart], cfg: PairsiftConfig, layout: RunLayout) -> pa.Schema:
    """The audit schema of a run from embeddings (its parts stand in for input shards)."""
    return audit_schema([layout.embeddings_file(p.name) for p in parts],
                        [layout.scores_file(p.name) for p in parts], cfg.translate.target_langs)


class ImportPart(beam.DoFn):
    """One clip-retrieval part → ``OUT/embeddings/<part>.parquet`` (pass 1's format)."""

    def __init__(self, layout: RunLayout) -> None:
        self.layout = layout

    def process(self, part: EmbeddingPart) -> Iterator[str]:
        path = self.layout.embeddings_file(part.name)
        if not exists(path):
            rows = part_rows(part)
            write_rows(path, rows, row_group_size=EMBEDDING_ROW_GROUP)
            beam.metrics.Metrics.counter("pairsift", "imported").inc(len(rows))
        yield part.name


def import_parts(parts: list[EmbeddingPart], layout: RunLayout, options: PipelineOptions) -> dict[str, int]:
    """Each part as ``OUT/embeddings/NNNNN.parquet``, on Beam's workers (a part already
    written is skipped)."""
    todo = [p for p in parts if not exists(layout.embeddings_file(p.name))]
    if not todo:
        return {}
    pipeline = new_pipeline(options, "import")
    _ = (pipeline | "Parts" >> beam.Create(todo) | "Spread" >> beam.Reshuffle()
         | "Import" >> beam.ParDo(ImportPart(layout)))
    return run_pipeline(pipeline, "import", must_exist=[layout.embeddings_file(p.name) for p in todo])


class LabelPart(beam.DoFn):
    """One part's audit (one row per pair) and keep-list, through pass 2's labelling."""

    def __init__(self, layout: RunLayout, cfg: PairsiftConfig, schema: pa.Schema) -> None:
        self.layout, self.cfg, self.schema = layout, cfg, schema
        self.fit: NoiseFit | None = None

    def setup(self) -> None:
        self.fit = NoiseFit.from_dict(read_json(self.layout.noise_fit))

    def process(self, part: EmbeddingPart) -> Iterator[str]:
        assert self.fit is not None
        audit = write_part_audit(self.layout, self.cfg, self.fit, self.schema, part.name)
        keep_schema = pa.schema([self.schema.field(c) for c in KEEP_COLUMNS if c in self.schema.names])
        kept = [row for row in audit if row.get("label") in self.cfg.output.keep_labels]
        write_rows(self.layout.keep_file(part.name), kept, schema=keep_schema, extra=False)
        yield part.name


def write_part_audit(layout: RunLayout, cfg: PairsiftConfig, fit: NoiseFit, schema: pa.Schema,
                     name: str) -> list[dict[str, Any]]:
    """``OUT/audit/<name>.parquet`` of embedded shard ``name``: one row per pair, labelled
    as pass 2 labels (its rows are returned too)."""
    base = {r["key"]: r for r in read_table(layout.embeddings_file(name), skip_embeddings=True).to_pylist()}
    labels = ShardLabels.of(layout, name, fit, cfg)
    audit = [
        finish_audit_row(row, key, name, labels.is_duplicate(key), labels.scored(key),
                         labels.original_of(key))
        for key, row in base.items()
    ]
    write_rows(layout.audit_file(name), audit, schema=schema)
    return audit


def label_parts(parts: list[EmbeddingPart], cfg: PairsiftConfig, layout: RunLayout,
                options: PipelineOptions) -> dict[str, int]:
    """Each part's audit and keep-list, on Beam's workers (the keep-list marks it done)."""
    todo = [p for p in parts if not exists(layout.keep_file(p.name))]
    if not todo:
        return {}
    forget_tally(layout)
    pipeline = new_pipeline(options, "label")
    _ = (pipeline | "Parts" >> beam.Create(todo) | "Spread" >> beam.Reshuffle()
         | "Label" >> beam.ParDo(LabelPart(layout, cfg, parts_schema(parts, cfg, layout))))
    return run_pipeline(pipeline, "label", must_exist=[layout.keep_file(p.name) for p in todo])


class CurateByKey(CurateShard):
    """Pass 2 for a run from embeddings: an input shard's pairs take the labels their keys got
    in the audit. The labels reach each shard through a join by key (:func:`curate_by_key`),
    so a worker holds one shard's labels, never the whole audit."""

    def __init__(self, layout: RunLayout, cfg: PairsiftConfig, schema: pa.Schema,
                 shards: list[InputShard]) -> None:
        super().__init__(layout, cfg, schema)
        self.shards = shards

    def process(self, element: tuple[int, Iterable[dict[str, Any] | None]]) -> Iterator[str]:
        index, grouped = element
        shard, name = self.shards[index], output_name(index)
        if exists(self.layout.shard_stats(name)):
            yield name
            return
        labelled = {row["key"]: row for row in grouped if row is not None}
        kept: list[KeptImage] = []
        kept_rows: list[dict[str, Any]] = []
        seen = []
        for sample in read_shard(shard):
            row = labelled.get(sample.key)
            seen.append(row or {"status": "unlabelled", "label": None})
            if row and row.get("label") in self.cfg.output.keep_labels and sample.image_bytes is not None:
                # the curated row hashes the image it ships (the audit has only a fingerprint)
                kept_rows.append({**row, "sha256": sample.image_sha256})
                kept.append(KeptImage(len(kept), sample.image_bytes, sample.image_format))
        samples, curated = kept_samples(
            rows_to_table(kept_rows, schema=self.schema), kept,
            list(self.cfg.translate.target_langs), self.cfg.output)
        stats = shard_stats(shard.name, [r["status"] for r in seen],
                            [r.get("label") for r in seen], len(samples))
        write_shard(self.layout.shards, name, samples, stats=stats, table=curated,
                    count_by="label")
        yield name


def _audit_by_key(path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for row in read_table(path).to_pylist():
        yield row["key"], row


def _input_keys(element: tuple[int, InputShard]) -> Iterator[tuple[str, int]]:
    index, shard = element
    for sample in read_shard(shard):
        yield sample.key, index


def _route_label(element: tuple[str, dict[str, list]]) -> Iterator[tuple[int, dict[str, Any]]]:
    """A key's audit row to every input shard that holds the key (the first part's row, by
    part and position, when several parts carry the key)."""
    _key, joined = element
    rows = sorted(joined["audit"], key=lambda r: (r["source_shard"], r.get("index") or 0))
    if rows:
        for index in sorted(set(joined["input"])):
            yield index, rows[0]


def curate_by_key(shards: list[InputShard], cfg: PairsiftConfig, layout: RunLayout,
                  options: PipelineOptions, schema_parts: list[EmbeddingPart]) -> dict[str, int]:
    schema = parts_schema(schema_parts, cfg, layout)
    todo = [i for i in range(len(shards)) if not exists(layout.shard_stats(output_name(i)))]
    if not todo:
        return {}
    pipeline = new_pipeline(options, "curate")
    audit = (pipeline | "AuditFiles" >> beam.Create(list_files(layout.audit, ".parquet"))
             | "SpreadAudit" >> beam.Reshuffle() | "AuditByKey" >> beam.FlatMap(_audit_by_key))
    keys = (pipeline | "InputShards" >> beam.Create([(i, shards[i]) for i in todo])
            | "SpreadInput" >> beam.Reshuffle() | "InputKeys" >> beam.FlatMap(_input_keys))
    routed = ({"audit": audit, "input": keys} | "JoinByKey" >> beam.CoGroupByKey()
              | "Route" >> beam.FlatMap(_route_label))
    markers = pipeline | "Markers" >> beam.Create([(i, None) for i in todo])
    _ = ((routed, markers) | "Merge" >> beam.Flatten() | "ByShard" >> beam.GroupByKey()
         | "CurateByKey" >> beam.ParDo(CurateByKey(layout, cfg, schema, shards)))
    return run_pipeline(pipeline, "curate", must_exist=[layout.shard_stats(output_name(i)) for i in todo])


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
