"""The tally job (Beam): summary.json's counts and the final model's kept sample, from the
audit shard by shard, so the driver never loads the audit.

Each worker reads one audit file's small columns and yields its :class:`Tally` (pairs by
status and label, and, where the input carries ground truth, histograms of the noise score
of noisy and clean pairs) and its kept pairs as sample candidates. One combiner sums the
tallies (integer counts: any merge order agrees) into OUT/fit/tally.json; another keeps
the ``limits.max_fit_pairs`` kept pairs of smallest rank (the fit sample's rank) with their
clean posterior: OUT/fit/final_sample.parquet, which the final model trains on.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.options.pipeline_options import PipelineOptions

from pairsift.models.config import PairsiftConfig
from pairsift.models.storage.atomic import exists, list_files, read_json
from pairsift.models.storage.tables import read_table, write_table
from pairsift.pipeline.combiners import SumOf, WriteSum
from pairsift.pipeline.dedup import (
    IdRows,
    MergeCandidates,
    SampleCandidates,
    sample_ranks,
    sample_table,
)
from pairsift.pipeline.layout import RunLayout
from pairsift.pipeline.options import new_pipeline, run_pipeline
from pairsift.pipeline.report.selection import GalleryCandidates, columns_for, file_candidates

SCORE_BINS = 1 << 16  # noise-score histogram bins: the AUC from them is within 1e-4 of exact
P_CLEAN_BINS = 100  # the report's p_clean histogram
AUDIT_COLUMNS = ["source_shard", "key", "index", "status", "label", "p_clean", "is_noisy"]


@dataclass
class Tally:
    """Counts over audit rows. ``noisy``/``clean``: histograms of 1 - p_clean of the scored
    pairs with ground truth; ``kept_noisy``/``kept_clean``: those kept."""

    by_status: Counter = field(default_factory=Counter)
    by_label: Counter = field(default_factory=Counter)
    noisy: np.ndarray = field(default_factory=lambda: np.zeros(SCORE_BINS, dtype=np.int64))
    clean: np.ndarray = field(default_factory=lambda: np.zeros(SCORE_BINS, dtype=np.int64))
    kept_noisy: int = 0
    kept_clean: int = 0
    by_language: Counter = field(default_factory=Counter)  # "lang:label" -> translations
    by_shard: Counter = field(default_factory=Counter)  # "shard\0label or status" -> pairs
    p_clean: np.ndarray = field(default_factory=lambda: np.zeros(P_CLEAN_BINS, dtype=np.int64))

    def __add__(self, other: Tally) -> Tally:
        return Tally(self.by_status + other.by_status, self.by_label + other.by_label,
                     self.noisy + other.noisy, self.clean + other.clean,
                     self.kept_noisy + other.kept_noisy, self.kept_clean + other.kept_clean,
                     self.by_language + other.by_language, self.by_shard + other.by_shard,
                     self.p_clean + other.p_clean)

    def shard_outcomes(self) -> dict[str, dict[str, int]]:
        """Each input shard's pairs by outcome (the label, or the status of an unlabelled pair)."""
        return _nested(self.by_shard, "\0")

    def language_labels(self) -> dict[str, dict[str, int]]:
        """Each target language's translations by their own label."""
        return _nested(self.by_language, ":")

    @property
    def pairs(self) -> int:
        return sum(self.by_status.values())

    def kept(self, keep_labels: Iterable[str]) -> int:
        """Pairs with a label in ``keep_labels``: those pass 2 wrote to the shards."""
        keep = set(keep_labels)
        return sum(n for label, n in self.by_label.items() if label in keep)

    def to_dict(self) -> dict[str, Any]:
        return {"by_status": dict(sorted(self.by_status.items())),
                "by_label": dict(sorted(self.by_label.items())),
                "noisy": self.noisy.tolist(), "clean": self.clean.tolist(),
                "kept_noisy": self.kept_noisy, "kept_clean": self.kept_clean,
                **({"by_language": dict(sorted(self.by_language.items()))} if self.by_language else {}),
                "by_shard": {k.replace("\0", "/", 1): v for k, v in sorted(self.by_shard.items())},
                "p_clean": self.p_clean.tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Tally:
        shards = Counter({_shard_key(k): v for k, v in data.get("by_shard", {}).items()})
        p_clean = np.asarray(data.get("p_clean", np.zeros(P_CLEAN_BINS)), dtype=np.int64)
        return cls(Counter(data["by_status"]), Counter(data["by_label"]),
                   np.asarray(data["noisy"], dtype=np.int64), np.asarray(data["clean"], dtype=np.int64),
                   int(data["kept_noisy"]), int(data["kept_clean"]), Counter(data.get("by_language", {})),
                   shards, p_clean)

    def detection(self) -> dict[str, Any]:
        """Against ground truth (``is_noisy``) where the input carries it; empty otherwise."""
        noisy, clean = int(self.noisy.sum()), int(self.clean.sum())
        if noisy + clean == 0:
            return {}
        out: dict[str, Any] = {"true_noise_ratio": noisy / (noisy + clean), "scored_pairs": noisy + clean}
        if noisy and clean:
            # P(noisy pair scores above a clean one), ties within a bin counted half
            below = np.cumsum(self.clean) - self.clean
            out["detection_roc_auc"] = float((self.noisy * (below + 0.5 * self.clean)).sum() / (noisy * clean))
        kept = self.kept_noisy + self.kept_clean
        out["kept_precision"] = self.kept_clean / kept if kept else None
        out["kept_recall"] = self.kept_clean / clean if clean else None
        return out


def _nested(counts: Counter, separator: str) -> dict[str, dict[str, int]]:
    """Counts keyed "outer<separator>inner" as {outer: {inner: count}}, sorted."""
    out: dict[str, dict[str, int]] = {}
    for key, count in sorted(counts.items()):
        outer, _, inner = key.partition(separator)
        out.setdefault(outer, {})[inner] = int(count)
    return out


def _shard_key(stored: str) -> str:
    """A ``by_shard`` key as tally.json writes it ("shard/outcome") back to the in-memory
    "shard\\0outcome": the outcome (a label or status) holds no "/", so the last one splits."""
    shard, _, outcome = stored.rpartition("/")
    return f"{shard}\0{outcome}"


def _report_counts(tally: Tally, table: pa.Table, status: list[str], labels: list[Any]) -> None:
    """The report's counts: pairs per shard by outcome, labelled pairs by p_clean."""
    shards = table.column("source_shard").to_pylist()
    tally.by_shard = Counter(f"{shard}\0{label or s}"
                             for shard, label, s in zip(shards, labels, status, strict=True))
    if "p_clean" in table.column_names:
        p = np.asarray(table.column("p_clean").to_numpy(zero_copy_only=False), dtype=np.float64)
        p = p[np.isfinite(p) & np.asarray([label is not None for label in labels], dtype=bool)]
        bins = np.minimum((np.clip(p, 0.0, 1.0) * P_CLEAN_BINS).astype(np.int64), P_CLEAN_BINS - 1)
        tally.p_clean = np.bincount(bins, minlength=P_CLEAN_BINS)


def audit_tally(table: pa.Table, keep_labels: set[str]) -> tuple[Tally, np.ndarray]:
    """One audit file's tally, and which of its rows were kept."""
    status = table.column("status").to_pylist()
    labels = table.column("label").to_pylist() if "label" in table.column_names else [None] * len(status)
    kept = np.asarray([label in keep_labels for label in labels], dtype=bool)
    tally = Tally(Counter(status), Counter(label for label in labels if label is not None))
    _report_counts(tally, table, status, labels)
    for name in table.column_names:
        if name.startswith("label_"):
            lang = name.removeprefix("label_")
            tally.by_language.update(f"{lang}:{v}" for v in table.column(name).to_pylist() if v)
    if "is_noisy" in table.column_names and "p_clean" in table.column_names:
        p_clean = np.asarray(table.column("p_clean").to_numpy(zero_copy_only=False), dtype=np.float64)
        truth = table.column("is_noisy").to_pylist()
        known = np.asarray([t is not None for t in truth]) & np.isfinite(p_clean)
        noisy = np.asarray([bool(t) for t in truth]) & known
        score = np.clip(1.0 - np.nan_to_num(p_clean), 0.0, 1.0)
        bins = np.minimum((score * SCORE_BINS).astype(np.int64), SCORE_BINS - 1)
        tally.noisy = np.bincount(bins[noisy], minlength=SCORE_BINS)
        tally.clean = np.bincount(bins[known & ~noisy], minlength=SCORE_BINS)
        tally.kept_noisy, tally.kept_clean = int((kept & noisy).sum()), int((kept & known & ~noisy).sum())
    return tally, kept


class TallyAudit(beam.DoFn):
    """Audit file → its :class:`Tally` (main) and its kept pairs' candidates (tagged)."""

    def __init__(self, layout: RunLayout, cfg: PairsiftConfig) -> None:
        self.layout, self.keep = layout, set(cfg.output.keep_labels)
        self.seed, self.limit = cfg.seed, cfg.limits.max_fit_pairs
        self.langs = list(cfg.translate.target_langs)
        self.columns = list(dict.fromkeys(AUDIT_COLUMNS + columns_for(self.langs)))

    def process(self, path: str) -> Iterator[Any]:
        table = read_table(path, columns=self.columns)
        if not table.num_rows:
            return
        tally, kept = audit_tally(table, self.keep)
        yield tally
        yield beam.pvalue.TaggedOutput("gallery", file_candidates(table, self.keep, self.langs, self.seed))
        rows = np.flatnonzero(kept)
        if rows.size:
            yield beam.pvalue.TaggedOutput("kept", SampleCandidates(
                self._kept_ids(table.take(pa.array(rows))).smallest(self.limit), len(rows), 0))

    def _kept_ids(self, kept: pa.Table) -> IdRows:
        """The kept rows with where their vectors live (row in the embeddings file)."""
        shards = np.asarray(kept.column("source_shard").to_pylist(), dtype=object)
        index = np.asarray(kept.column("index").to_numpy(zero_copy_only=False), dtype=np.int64)
        file_rows = np.zeros(len(index), dtype=np.int64)
        for shard in np.unique(shards):
            mine = np.flatnonzero(shards == shard)
            positions = read_table(self.layout.embeddings_file(str(shard)), columns=["index"])
            written = np.asarray(positions.column("index").to_numpy(zero_copy_only=False), dtype=np.int64)
            found = np.searchsorted(written, index[mine])  # pass 1 writes rows by position
            file_rows[mine] = found
        keys = np.asarray(kept.column("key").to_pylist(), dtype=object)
        p_clean = np.asarray(kept.column("p_clean").to_numpy(zero_copy_only=False), dtype=np.float64)
        return IdRows(shards, keys, index, file_rows, sample_ranks(keys, self.seed), p_clean)


class WriteFinalSample(beam.DoFn):
    def __init__(self, path: str) -> None:
        self.path = path

    def process(self, candidates: SampleCandidates) -> Iterator[int]:
        write_table(self.path, sample_table(candidates.rows, "p_clean"))
        yield len(candidates.rows)


def build_tally(pipeline: beam.Pipeline, cfg: PairsiftConfig, layout: RunLayout,
                audit_files: list[str]) -> None:
    tallied = (pipeline | "AuditFiles" >> beam.Create(audit_files) | "Spread" >> beam.Reshuffle()
               | "Tally" >> beam.ParDo(TallyAudit(layout, cfg)).with_outputs("kept", "gallery", main="tally"))
    _ = (tallied.gallery | "Gallery" >> beam.CombineGlobally(SumOf(GalleryCandidates))
         | "WriteGallery" >> beam.ParDo(WriteSum(layout.gallery)))
    _ = (tallied.tally | "Sum" >> beam.CombineGlobally(SumOf(Tally))
         | "WriteTally" >> beam.ParDo(WriteSum(layout.tally)))
    _ = (tallied.kept | "KeptSample" >> beam.CombineGlobally(MergeCandidates(cfg.limits.max_fit_pairs, "float64"))
         | "WriteFinalSample" >> beam.ParDo(WriteFinalSample(layout.final_sample)))


def run_tally(cfg: PairsiftConfig, layout: RunLayout, options: PipelineOptions) -> Tally:
    """Run the tally job unless both its outputs exist; returns the tally."""
    outputs = [layout.tally, layout.final_sample, layout.gallery]
    if not all(exists(path) for path in outputs):
        pipeline = new_pipeline(options, "tally")
        build_tally(pipeline, cfg, layout, list_files(layout.audit, ".parquet"))
        run_pipeline(pipeline, "tally", must_exist=outputs)
    return Tally.from_dict(read_json(layout.tally))
