"""The dedup job (Beam): exact duplicates, and the fit's deterministic sample, without ever
holding every pair's ids in one process.

Each worker reads one embedding shard's id columns and sends its rows, as column batches,
to one of :data:`BUCKETS` buckets by fingerprint (image bytes + caption). A bucket holds
every copy of its fingerprints, so it marks duplicates alone: each copy after the first in
(shard, index) order. Duplicates land in OUT/fit/duplicates/<shard>.parquet (only for shards
that have some), which the score pass reads shard by shard. The unique pairs' sample
candidates meet in one combiner that keeps the ``limits.max_fit_pairs`` smallest ranks,
a hash of the seed and the key: OUT/fit/sample.parquet, the rows the fit reads vectors of.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.options.pipeline_options import PipelineOptions

from pairsift.models.config import PairsiftConfig
from pairsift.models.records import Status
from pairsift.models.storage.atomic import exists, list_files, read_json, write_json
from pairsift.models.storage.tables import read_table, write_table
from pairsift.pipeline.layout import RunLayout
from pairsift.pipeline.options import new_pipeline, run_pipeline

log = logging.getLogger(__name__)

BUCKETS = 256  # a bucket holds about N / 256 rows' ids (400 k at 100 M pairs)
DUPLICATES = "duplicates"


def sample_ranks(keys: Iterable[str], seed: int) -> np.ndarray:
    """A pair's place in the fit sample: the first 8 bytes of sha1(seed:key), so the sample
    depends on the keys and the seed only, never on order or worker count."""
    return np.fromiter(
        (int.from_bytes(hashlib.sha1(f"{seed}:{k}".encode()).digest()[:8], "big") for k in keys),
        dtype=np.uint64)


@dataclass
class IdRows:
    """Column batch of embedded pairs' ids: shard name, key, position in the input shard
    (``index``), row in the embeddings file (``row``), sample rank, and a value per row."""

    shard: np.ndarray
    key: np.ndarray
    index: np.ndarray
    row: np.ndarray
    rank: np.ndarray
    value: np.ndarray  # the fingerprint (dedup) or the clean posterior (tally)

    def __len__(self) -> int:
        return len(self.key)

    def take(self, order: np.ndarray) -> IdRows:
        return IdRows(*(getattr(self, f)[order] for f in self.__dataclass_fields__))

    @staticmethod
    def concat(parts: list[IdRows]) -> IdRows:
        return IdRows(*(np.concatenate([getattr(p, f) for p in parts])
                        for f in IdRows.__dataclass_fields__))

    def in_order(self, *leading: np.ndarray) -> np.ndarray:
        """Argsort by ``leading`` keys, then (shard, index): input order breaks every tie."""
        _, shard_code = np.unique(self.shard, return_inverse=True)
        return np.lexsort((self.index, shard_code, *reversed(leading)))

    def smallest(self, limit: int) -> IdRows:
        """The ``limit`` rows of smallest rank (ties: input order)."""
        if len(self) <= limit:
            return self
        return self.take(self.in_order(self.rank)[:limit])


@dataclass
class SampleCandidates:
    """A share of the fit sample, and of the counts the fit reports."""

    rows: IdRows
    unique: int
    duplicates: int


def shard_ids(path: str, shard: str, seed: int) -> IdRows:
    """The ok rows of one embeddings file as :class:`IdRows`."""
    table = read_table(path, columns=["key", "index", "status", "sha256", "caption_sha256"])
    if not table.num_rows or "status" not in table.column_names:
        return empty_ids()
    status = np.asarray(table.column("status").to_pylist(), dtype=object)
    ok = np.flatnonzero(status == Status.OK.value)
    keys = np.asarray(table.column("key").to_pylist(), dtype=object)[ok]
    images = table.column("sha256").to_pylist()
    captions = table.column("caption_sha256").to_pylist()
    prints = np.asarray([hashlib.sha256(f"{images[i]}|{captions[i]}".encode()).digest()[:16]
                         for i in ok], dtype="S16")
    return IdRows(np.full(len(ok), shard, dtype=object), keys,
                  np.asarray(table.column("index").to_numpy(zero_copy_only=False))[ok].astype(np.int64),
                  ok.astype(np.int64), sample_ranks(keys, seed), prints)


def empty_ids(value_dtype: str = "S16") -> IdRows:
    return IdRows(np.zeros(0, dtype=object), np.zeros(0, dtype=object), np.zeros(0, np.int64),
                  np.zeros(0, np.int64), np.zeros(0, np.uint64), np.zeros(0, dtype=value_dtype))


class ReadShardIds(beam.DoFn):
    """Embedding shard → its rows by fingerprint bucket (dedup on), or straight to the
    sample (dedup off: every pair is unique)."""

    def __init__(self, layout: RunLayout, cfg: PairsiftConfig) -> None:
        self.layout, self.dedup = layout, cfg.dedup
        self.seed, self.limit = cfg.seed, cfg.limits.max_fit_pairs

    def process(self, shard: str) -> Iterator[Any]:
        rows = shard_ids(self.layout.embeddings_file(shard), shard, self.seed)
        if not self.dedup:
            yield beam.pvalue.TaggedOutput("sample", SampleCandidates(rows.smallest(self.limit), len(rows), 0))
            return
        bucket = np.frombuffer(rows.value.tobytes(), dtype=np.uint8)[::16].astype(np.int64) % BUCKETS
        for b in np.unique(bucket):
            yield int(b), rows.take(np.flatnonzero(bucket == b))


class DivideBucket(beam.DoFn):
    """One bucket's rows → its duplicates by shard (tagged) and its unique pairs' candidates."""

    def __init__(self, limit: int) -> None:
        self.limit = limit

    def process(self, element: tuple[int, Iterable[IdRows]]) -> Iterator[Any]:
        rows = IdRows.concat(list(element[1]))
        rows = rows.take(rows.in_order(rows.value))
        first = np.ones(len(rows), dtype=bool)
        first[1:] = rows.value[1:] != rows.value[:-1]
        copy_at = np.flatnonzero(~first)
        copies = rows.take(copy_at)
        # each copy's original: the first pair of its run of equal fingerprints (input order)
        origin = np.maximum.accumulate(np.where(first, np.arange(len(rows)), 0))[copy_at]
        originals = np.asarray([f"{rows.shard[i]}/{rows.key[i]}" for i in origin.tolist()], dtype=object)
        for shard in np.unique(copies.shard):
            mine = np.flatnonzero(copies.shard == shard)
            yield beam.pvalue.TaggedOutput(DUPLICATES, (str(shard), (copies.take(mine), originals[mine])))
        yield SampleCandidates(rows.take(np.flatnonzero(first)).smallest(self.limit),
                               int(first.sum()), len(copies))


class MergeCandidates(beam.CombineFn):
    """Keeps the ``limit`` smallest-rank candidates and sums the counts (any merge order
    gives the same result: ranks tie-break by input order)."""

    def __init__(self, limit: int, value_dtype: str = "S16") -> None:
        self.limit, self.value_dtype = limit, value_dtype

    def create_accumulator(self) -> SampleCandidates:
        return SampleCandidates(empty_ids(self.value_dtype), 0, 0)

    def add_input(self, acc: SampleCandidates, element: SampleCandidates) -> SampleCandidates:
        return self.merge_accumulators([acc, element])

    def merge_accumulators(self, accumulators: Iterable[SampleCandidates]) -> SampleCandidates:
        accs = list(accumulators)
        rows = IdRows.concat([a.rows for a in accs]).smallest(self.limit)
        return SampleCandidates(rows, sum(a.unique for a in accs), sum(a.duplicates for a in accs))

    def extract_output(self, acc: SampleCandidates) -> SampleCandidates:
        return acc


def sample_table(rows: IdRows, value_column: str | None = None) -> pa.Table:
    """A sample in input order (shard, index), the order the models train in; with
    ``value_column``, the rows' values under that name (the final sample's ``p_clean``)."""
    rows = rows.take(rows.in_order())
    columns = {"source_shard": pa.array(rows.shard.tolist(), pa.string()),
               "key": pa.array(rows.key.tolist(), pa.string()),
               "index": pa.array(rows.index, pa.int64()), "row": pa.array(rows.row, pa.int64())}
    if value_column:
        columns[value_column] = pa.array(rows.value)
    return pa.table(columns)


class WriteSample(beam.DoFn):
    def __init__(self, layout: RunLayout) -> None:
        self.layout = layout

    def process(self, candidates: SampleCandidates) -> Iterator[int]:
        write_table(self.layout.fit_sample, sample_table(candidates.rows))
        write_json(self.layout.dedup_counts, {"embedded_pairs": candidates.unique + candidates.duplicates,
                                              "duplicates": candidates.duplicates})
        yield len(candidates.rows)


class WriteDuplicates(beam.DoFn):
    def __init__(self, layout: RunLayout) -> None:
        self.layout = layout

    def process(self, element: tuple[str, Iterable[tuple[IdRows, np.ndarray]]]) -> Iterator[str]:
        """A shard's duplicates, in input order, each with the pair it copies ("shard/key")."""
        shard, parts = element
        parts = list(parts)
        rows = IdRows.concat([p[0] for p in parts])
        originals = np.concatenate([p[1] for p in parts])
        order = np.argsort(rows.index, kind="stable")
        rows = rows.take(order)
        write_table(self.layout.duplicates_file(shard),
                    pa.table({"key": pa.array(rows.key.tolist(), pa.string()),
                              "index": pa.array(rows.index, pa.int64()),
                              "duplicate_of": pa.array(originals[order].tolist(), pa.string())}))
        beam.metrics.Metrics.counter("pairsift", "duplicates").inc(len(rows))
        yield shard


def build_dedup(pipeline: beam.Pipeline, cfg: PairsiftConfig, layout: RunLayout,
                shard_names: list[str]) -> None:
    limit = cfg.limits.max_fit_pairs
    ids = (pipeline | "EmbeddingShards" >> beam.Create(shard_names) | "Spread" >> beam.Reshuffle()
           | "ReadIds" >> beam.ParDo(ReadShardIds(layout, cfg)).with_outputs("sample", main="buckets"))
    candidates = [ids.sample]
    if cfg.dedup:
        divided = (ids.buckets | "ByFingerprint" >> beam.GroupByKey()
                   | "Divide" >> beam.ParDo(DivideBucket(limit)).with_outputs(DUPLICATES, main="unique"))
        candidates.append(divided.unique)
        _ = (divided[DUPLICATES] | "ByShard" >> beam.GroupByKey()
             | "WriteDuplicates" >> beam.ParDo(WriteDuplicates(layout)))
    _ = (candidates | "AllCandidates" >> beam.Flatten()
         | "Sample" >> beam.CombineGlobally(MergeCandidates(limit))
         | "WriteSample" >> beam.ParDo(WriteSample(layout)))


def embedding_shard_names(layout: RunLayout) -> list[str]:
    return [p.rsplit("/", 1)[-1][: -len(".parquet")] for p in list_files(layout.embeddings, ".parquet")]


def run_dedup(cfg: PairsiftConfig, layout: RunLayout, options: PipelineOptions) -> dict[str, Any]:
    """Run the dedup job unless its marker exists; returns its counts."""
    if exists(layout.dedup_done):
        return read_json(layout.dedup_done)
    pipeline = new_pipeline(options, "dedup")
    build_dedup(pipeline, cfg, layout, embedding_shard_names(layout))
    run_pipeline(pipeline, "dedup", must_exist=[layout.fit_sample, layout.dedup_counts])
    counts = read_json(layout.dedup_counts)
    if not counts["embedded_pairs"]:
        raise RuntimeError(
            f"no embedded pairs under {layout.embeddings}: every pair failed before embedding; "
            "see the audit rows in the embeddings parquet for the reasons")
    log.info("dedup: %d embedded pairs, %d exact duplicates", counts["embedded_pairs"], counts["duplicates"])
    write_json(layout.dedup_done, counts)  # written last: the stage's completion marker
    return counts
