"""Pass 1: read → validate → (langid/translate) → embed → OUT/embeddings/<shard>.parquet.

One DoFn call does all of it for one input shard (:class:`EmbedShard`): batches are formed
from the shard's own pairs in input order, so the vectors, and every byte downstream, do not
depend on how the runner splits work or how many workers it runs; no row is shuffled. The
parquet holds every pair of the shard: embedded pairs with their vectors and pairs that
stopped early with their status and reason. It is the shard's completion marker, so a rerun
embeds only shards without one. A table shard's embedded images are also kept, in
OUT/images/SHARD.tar (written first), where pass 2 copies them by range: a URL is fetched once. Locally, a pass 1 of at least four shards runs one worker
process per core, all shards in one job, the progress line following their files; with one
worker, shards run in waves of ``wave_size`` so that the progress line moves. A remote runner
gets all pending shards as one job.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator
from typing import Any

import apache_beam as beam
import pyarrow as pa
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions

from pairsift.models.config import PairsiftConfig
from pairsift.models.records import PairSample, Status, audit_row, text_sha256
from pairsift.models.storage.atomic import atomic_open, exists
from pairsift.models.storage.tables import write_rows
from pairsift.pipeline.io.readers import InputShard, keeps_image_copy, read_shard
from pairsift.pipeline.io.shard_writer import TarStream
from pairsift.pipeline.layout import RunLayout
from pairsift.pipeline.options import (
    is_local,
    local_workers,
    new_pipeline,
    parallel_local_options,
    run_pipeline,
    worker_threads,
)
from pairsift.pipeline.progress import FilePoller, StageProgress
from pairsift.transforms.validate import CaptionLimits, validate

log = logging.getLogger(__name__)

EMPTY_SHARD_SCHEMA = pa.schema([("key", pa.string()), ("source_shard", pa.string()),
                                ("index", pa.int64()), ("status", pa.string())])
# rows per parquet row group: the fit reads a sample's vectors a row group at a time
EMBEDDING_ROW_GROUP = 1024
# validated pairs translated and embedded per step: bounds a worker's memory per shard
CHUNK_PAIRS = 512


class EmbedShard(beam.DoFn):
    """One input shard → its embeddings parquet (atomic); yields the shard's name."""

    def __init__(self, cfg: PairsiftConfig, layout: RunLayout) -> None:
        self.cfg = cfg
        self.layout = layout
        self.limits = CaptionLimits(max_chars=cfg.limits.max_caption_chars)
        self.translator: Any = None
        self.embedder: Any = None
        # whole batches per chunk: the batches are the same whatever CHUNK_PAIRS is
        batch = max(cfg.encoder.batch_size, 1)
        self.chunk_size = max(CHUNK_PAIRS // batch, 1) * batch

    def setup(self) -> None:
        from pairsift.models.threads import set_torch_threads
        from pairsift.transforms.embed import ShardEmbedder
        from pairsift.transforms.translate import ShardTranslator

        set_torch_threads(self.cfg.encoder.threads)  # the config's (options.worker_threads)
        # always runs: with no target language it only identifies each caption's language
        self.translator = ShardTranslator(self.cfg.translate, self.cfg.encoder.device)
        self.translator.setup()
        self.embedder = ShardEmbedder(self.cfg.encoder, list(self.cfg.translate.target_langs),
                                      self.cfg.limits.max_image_pixels)
        self.embedder.setup()

    def teardown(self) -> None:
        if self.translator is not None:
            self.translator.close()
        if self.embedder is not None:
            self.embedder.teardown()

    def process(self, shard: InputShard) -> Iterator[str]:
        path = self.layout.embeddings_file(shard.name)
        if not exists(path):  # a retried bundle finds the shard already written
            rows = sorted(self._rows(shard), key=lambda r: r["index"])
            for row in rows:
                caption = row.get("caption")
                row["caption_sha256"] = text_sha256(caption) if isinstance(caption, str) else None
            Metrics.counter("pairsift", "embedded").inc(
                sum(1 for r in rows if r["status"] == Status.OK.value))
            # an empty shard still gets its id columns: parquet readers refuse a file with none
            write_rows(path, rows, schema=None if rows else EMPTY_SHARD_SCHEMA,
                       row_group_size=EMBEDDING_ROW_GROUP)
        yield shard.name

    def _rows(self, shard: InputShard) -> list[dict[str, Any]]:
        """The shard's rows; a table shard's embedded images are also copied into
        OUT/images/SHARD.tar (written before the rows, which mark the shard done), so that
        pass 2 copies them by range and never fetches a URL or opens a named file again."""
        if not keeps_image_copy(shard):
            return list(self.shard_rows(read_shard(shard)))
        with atomic_open(self.layout.images_file(shard.name), "wb") as handle:
            copy = TarStream(handle)
            rows = list(self.shard_rows(read_shard(shard), copy))
            copy.close()
        return rows

    def shard_rows(
        self, samples: Iterable[PairSample], copy: TarStream | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every sample's row: an audit row where validation stops it, else its embedding;
        with ``copy``, each embedded image is appended to it and its row records where."""
        chunk: list[PairSample] = []
        for sample in samples:
            keep, status, reason = validate(sample, self.limits)
            if not keep:
                assert status is not None
                Metrics.counter("pairsift", f"validate_{status.value}").inc()
                yield audit_row(sample, status, reason)
                continue
            Metrics.counter("pairsift", "validate_ok").inc()
            if copy is not None and sample.image_bytes is not None:
                sample.member_size = len(sample.image_bytes)
                sample.member_offset = copy.add(f"{sample.index}.{sample.image_format or 'bin'}",
                                                sample.image_bytes)
            sample.caption = sample.caption.strip() if sample.caption else sample.caption
            chunk.append(sample)
            if len(chunk) == self.chunk_size:
                yield from self._embedded(chunk)
                chunk = []
        if chunk:
            yield from self._embedded(chunk)

    def _embedded(self, chunk: list[PairSample]) -> Iterator[dict[str, Any]]:
        self.translator(chunk)
        yield from self.embedder.embed(chunk)


def build_pass1(
    pipeline: beam.Pipeline, shards: list[InputShard], cfg: PairsiftConfig, layout: RunLayout
) -> beam.PCollection:
    return (
        pipeline
        | "Shards" >> beam.Create(shards)
        | "Spread" >> beam.Reshuffle()
        | "EmbedShard" >> beam.ParDo(EmbedShard(cfg, layout))
    )


def input_bytes(shards: list[InputShard]) -> int:
    """The bytes of the shards' files, where a size is cheap to ask (a folder chunk, or a
    file whose size cannot be read, counts 0)."""
    import fsspec

    total = 0
    for path in sorted({s.path for s in shards if s.kind in ("tar", "table")}):
        try:
            fs, local = fsspec.core.url_to_fs(path)
            total += int(fs.size(local) or 0)
        except Exception:  # noqa: BLE001 - a size is a hint for the worker count only
            continue
    return total


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
    if is_local(options):  # sizes only matter to the local runner's worker count
        options = parallel_local_options(options, len(todo), input_bytes(todo))
    workers = local_workers(options)
    cfg = worker_threads(cfg, options)
    if workers > 1:
        log.info("pass 1: %d local worker processes, %d torch threads each", workers,
                 cfg.encoder.threads)
    # several local workers run every pending shard in one job (each job starts its
    # processes afresh), and the progress line follows the shards' files instead of waves
    wave = len(todo) if (wave_size <= 0 or not is_local(options) or workers > 1) else wave_size
    progress = StageProgress("pass 1 (embed)", total=len(shards), done=done, unit="shards")
    for start in range(0, len(todo), wave):
        batch = todo[start : start + wave]
        pipeline = new_pipeline(options, "pass 1")
        build_pass1(pipeline, batch, cfg, layout)
        written = [layout.embeddings_file(s.name) for s in batch]
        with FilePoller(progress, written, exists) if workers > 1 else contextlib.nullcontext():
            for name, value in run_pipeline(pipeline, "pass 1", must_exist=written).items():
                counters[name] = counters.get(name, 0) + value
        if workers <= 1:
            progress.advance(len(batch))
    progress.finish()
    return counters
