"""Pass 1: read → validate → (langid/translate) → embed → OUT/embeddings/<shard>.parquet.

One parquet per input shard holds every pair of that shard: embedded pairs with their vectors
and pairs that stopped early with their status and reason. The file is the shard's completion
marker, so a rerun embeds only shards without one. Locally, shards run in waves of
``wave_size`` pipelines so that progress is saved as it goes (a Beam GroupByKey is a barrier:
one pipeline over all shards would save nothing until the very end).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Any

import apache_beam as beam
import pyarrow as pa
from apache_beam.options.pipeline_options import PipelineOptions

from pairsift.models.config import PairsiftConfig
from pairsift.models.records import Status, text_sha256
from pairsift.models.storage.atomic import exists
from pairsift.models.storage.tables import write_rows
from pairsift.pipeline.io.readers import InputShard, read_shard
from pairsift.pipeline.layout import RunLayout
from pairsift.pipeline.options import is_local, new_pipeline, run_pipeline
from pairsift.pipeline.progress import StageProgress
from pairsift.transforms.validate import AUDIT_TAG, CaptionLimits, ValidatePairs

log = logging.getLogger(__name__)


class WriteEmbeddingShard(beam.DoFn):
    """Writes all rows of one shard, sorted by position, as one parquet (atomic)."""

    def __init__(self, layout: RunLayout) -> None:
        self.layout = layout

    def process(self, element: tuple[str, Iterable[dict[str, Any] | None]]) -> Iterator[str]:
        shard_name, grouped = element
        rows = sorted((r for r in grouped if r is not None), key=lambda r: r["index"])
        for row in rows:
            caption = row.get("caption")
            row["caption_sha256"] = text_sha256(caption) if isinstance(caption, str) else None
            if row["status"] == Status.OK.value:
                beam.metrics.Metrics.counter("pairsift", "embedded").inc()
        # an empty shard still gets its id columns: parquet readers refuse a file with none
        write_rows(self.layout.embeddings_file(shard_name), rows,
                   schema=None if rows else EMPTY_SHARD_SCHEMA)
        yield shard_name


EMPTY_SHARD_SCHEMA = pa.schema([("key", pa.string()), ("source_shard", pa.string()),
                                ("index", pa.int64()), ("status", pa.string())])


def build_pass1(
    pipeline: beam.Pipeline, shards: list[InputShard], cfg: PairsiftConfig, layout: RunLayout
) -> beam.PCollection:
    from pairsift.transforms.embed import EmbedPairs
    from pairsift.transforms.translate import TranslateCaptions

    shard_pc = pipeline | "Shards" >> beam.Create(shards) | "Spread" >> beam.Reshuffle()
    samples = shard_pc | "Read" >> beam.FlatMap(read_shard)
    limits = CaptionLimits(max_chars=cfg.limits.max_caption_chars)
    checked = samples | "Validate" >> beam.ParDo(ValidatePairs(limits)).with_outputs(
        AUDIT_TAG, main="ok"
    )
    langs = list(cfg.translate.target_langs)
    # always runs: with no target language it only identifies each caption's language
    ok = checked.ok | "LangidTranslate" >> TranslateCaptions(cfg.translate, cfg.encoder.device)
    embedded = ok | "Embed" >> EmbedPairs(cfg.encoder, langs, cfg.limits.max_image_pixels)
    rows = (checked[AUDIT_TAG], embedded.embedded, embedded.failed) | "AllRows" >> beam.Flatten()
    keyed = rows | "ByShard" >> beam.Map(lambda row: (row["source_shard"], row))
    # one empty marker per shard so that a shard with no readable pair still completes
    markers = shard_pc | "Markers" >> beam.Map(lambda shard: (shard.name, None))
    return (
        (keyed, markers)
        | "Merge" >> beam.Flatten()
        | "GroupShard" >> beam.GroupByKey()
        | "Write" >> beam.ParDo(WriteEmbeddingShard(layout))
    )


def pending_shards(shards: list[InputShard], layout: RunLayout) -> list[InputShard]:
    return [s for s in shards if not exists(layout.embeddings_file(s.name))]


def run_pass1(
    shards: list[InputShard],
    cfg: PairsiftConfig,
    layout: RunLayout,
    options: PipelineOptions,
    wave_size: int,
) -> dict[str, int]:
    todo = pending_shards(shards, layout)
    done = len(shards) - len(todo)
    if done:
        log.info("pass 1: %d of %d shards already embedded, skipping them", done, len(shards))
    counters: dict[str, int] = {}
    if not todo:
        return counters
    wave = len(todo) if (wave_size <= 0 or not is_local(options)) else wave_size
    progress = StageProgress("pass 1 (embed)", total=len(shards), done=done, unit="shards")
    for start in range(0, len(todo), wave):
        batch = todo[start : start + wave]
        pipeline = new_pipeline(options, "pass 1")
        build_pass1(pipeline, batch, cfg, layout)
        written = [layout.embeddings_file(s.name) for s in batch]
        for name, value in run_pipeline(pipeline, "pass 1", must_exist=written).items():
            counters[name] = counters.get(name, 0) + value
        progress.advance(len(batch))
    progress.finish()
    return counters
