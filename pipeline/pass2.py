"""Pass 2 (Beam, parallel over input shards): label every pair, write curated shards + audit.

Each worker labels its input shard's pass-1 rows with their scores and copies the kept
images' bytes by the byte ranges pass 1 recorded, from an uncompressed input tar or from pass
1's copy of a table shard's images (no tar parsing, no decoding, dropped members never read, no
URL fetched again; other inputs are read again in full), and writes OUT/audit/NNNNN.parquet (one
row per input pair) and OUT/shards/NNNNN.{tar,parquet,_stats.json} (kept pairs, original
bytes). The stats file is written last: it marks the shard complete for a resumed run.
"""

from __future__ import annotations

import logging
import zlib
from collections import Counter
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.options.pipeline_options import PipelineOptions

from pairsift.models.config import PairsiftConfig
from pairsift.models.noise.fit import NoiseFit
from pairsift.models.records import BYTE_RANGE_COLUMNS, Status, is_internal_column
from pairsift.models.storage.atomic import exists, read_json
from pairsift.models.storage.tables import read_table, write_table
from pairsift.pipeline.audit_columns import AuditColumns, ShardLabels
from pairsift.pipeline.audit_schema import audit_schema
from pairsift.pipeline.io.byte_ranges import read_ranges
from pairsift.pipeline.io.readers import InputShard, byte_ranged, keeps_image_copy, read_shard
from pairsift.pipeline.io.shard_writer import shard_complete, write_shard
from pairsift.pipeline.kept_samples import KeptImage, kept_samples
from pairsift.pipeline.layout import RunLayout
from pairsift.pipeline.options import is_local, new_pipeline, run_pipeline
from pairsift.pipeline.progress import StageProgress, following_files
from pairsift.transforms.curate import finish_audit_row

log = logging.getLogger(__name__)


def output_name(index: int) -> str:
    return f"{index:05d}"


class CurateShard(beam.DoFn):
    def __init__(self, layout: RunLayout, cfg: PairsiftConfig, schema: pa.Schema) -> None:
        self.layout = layout
        self.cfg = cfg
        self.schema = schema  # every audit file's (the curated parquet's: less ``index``)
        self.fit: NoiseFit | None = None

    def setup(self) -> None:
        self.fit = NoiseFit.from_dict(read_json(self.layout.noise_fit))

    def process(self, element: tuple[int, InputShard]) -> Iterator[str]:
        index, shard = element
        name = output_name(index)
        if shard_complete(self.layout.shards, name) and exists(self.layout.audit_file(name)):
            yield name
            return
        assert self.fit is not None
        pass1 = read_table(self.layout.embeddings_file(shard.name), skip_embeddings=True)
        scored = ShardLabels.of(self.layout, shard.name, self.fit, self.cfg)
        source = range_source(shard, self.layout)
        if source is not None and ranged_rows(pass1):
            audit, kept = self._by_ranges(source, pass1, scored)
        else:
            rows = {row["key"]: row for row in pass1.to_pylist()}
            audit = AuditColumns.from_rows(self._by_reading(shard, rows, scored, kept := []))
        table = audit.table(self.schema)
        write_table(self.layout.audit_file(name), table)
        audit.count_outcomes()
        statuses = audit.columns["status"]
        samples, curated = kept_samples(table, kept, list(self.cfg.translate.target_langs),
                                        self.cfg.output)
        write_shard(
            self.layout.shards,
            name,
            samples,
            stats=shard_stats(shard.name, statuses, audit.columns["label"], len(samples)),
            table=curated,
            count_by="label",
            complete=Status.REREAD_ERROR.value not in statuses,  # a rerun retries a shard whose pairs could not be re-read
        )
        yield name

    def _by_ranges(
        self, source: str, pass1: pa.Table, scored: ShardLabels
    ) -> tuple[AuditColumns, list[KeptImage]]:
        """The audit from pass 1's rows alone; the kept images copied from ``source`` by the
        byte ranges pass 1 recorded (merged range reads, no tar parsing, dropped members never
        read), each checked against its CRC-32."""
        audit = AuditColumns.label(pass1, scored)
        chosen = list(audit.rows_where(set(self.cfg.output.keep_labels)))
        ranges = {name: pass1.column(name).to_pylist() if name in pass1.column_names
                  else [None] * pass1.num_rows for name in BYTE_RANGE_COLUMNS}
        failure = ""
        try:
            images = read_ranges(source, [ranges["member_offset"][i] for i in chosen],
                                 [ranges["member_size"][i] for i in chosen])
        except Exception as exc:  # noqa: BLE001 - every kept pair gets the reason
            images = [None] * len(chosen)  # type: ignore[list-item]
            failure = f"{type(exc).__name__}: {exc}"
        kept: list[KeptImage] = []
        for i, image in zip(chosen, images, strict=True):
            if image is not None and zlib.crc32(image) == ranges["member_crc32"][i]:
                kept.append(KeptImage(i, image, ranges["member_ext"][i]))
                continue
            reason = failure if image is None else "its bytes changed since pass 1 (CRC-32 differs)"
            audit.fail(i, Status.REREAD_ERROR,
                       f"embedded in pass 1, but pass 2 could not re-read its image: {reason}")
        return audit, kept

    def _by_reading(
        self, shard: InputShard, pass1: dict[str, dict[str, Any]], scored: ShardLabels,
        kept: list[KeptImage],
    ) -> list[dict[str, Any]]:
        """Audit rows, and the kept samples into ``kept``, by reading the whole shard again:
        the fallback for inputs without byte ranges (compressed tars, tables, folders)."""
        audit: list[dict[str, Any]] = []
        keep_labels = set(self.cfg.output.keep_labels)
        failure = None
        for sample in read_shard(shard):
            if sample.key not in pass1 and sample.error_status == Status.READ_ERROR.value:
                failure = sample.error  # the shard itself failed to read: no pair of its own
                continue
            row = finish_audit_row(pass1.get(sample.key), sample.key, shard.name,
                                   scored.is_duplicate(sample.key), scored.scored(sample.key),
                                   scored.original_of(sample.key))
            if row["status"] == Status.OK.value and sample.image_bytes is None:
                # embedded in pass 1, but this read failed (a URL that failed the second time)
                row.update(status=Status.REREAD_ERROR.value, label=None,
                           error=f"embedded in pass 1, but pass 2 could not re-read its image: "
                                 f"{sample.error or 'no image bytes'}")
            audit.append(row)
            if row.get("label") in keep_labels and sample.image_bytes is not None:
                kept.append(KeptImage(len(audit) - 1, sample.image_bytes, sample.image_format))
        audit.extend(reread_rows(pass1, {r["key"] for r in audit}, failure))
        return audit


def range_source(shard: InputShard, layout: RunLayout) -> str | None:
    """The file pass 1's byte ranges point into: an uncompressed tar itself, or pass 1's
    copy of a table shard's images (OUT/images); None: the shard is read again."""
    if byte_ranged(shard):
        return shard.path
    copy = layout.images_file(shard.name)
    return copy if keeps_image_copy(shard) and exists(copy) else None


def ranged_rows(pass1: pa.Table) -> bool:
    """Whether every embedded pair's pass-1 row carries its image's byte range (a run begun
    before ranges existed reads the shard again)."""
    if pass1.num_rows == 0:
        return True
    ok = pc.equal(pass1.column("status"), Status.OK.value)
    if "member_offset" not in pass1.column_names:
        return not pc.any(ok).as_py()  # no image to copy
    return not pc.any(pc.and_(ok, pc.is_null(pass1.column("member_offset")))).as_py()


def reread_rows(
    pass1: dict[str, dict[str, Any]], seen: set[str], failure: str | None
) -> list[dict[str, Any]]:
    """Audit rows for the pairs pass 1 read but pass 2 could not (the shard was deleted or
    changed in between): from their pass-1 rows, unlabelled, with the reason."""
    reason = failure or "the pair was not found when the shard was read again"
    rows = []
    for key, base in pass1.items():
        if key in seen:
            continue
        row = {k: v for k, v in base.items() if not is_internal_column(k)}
        row.update(status=Status.REREAD_ERROR.value, label=None,
                   error=f"embedded in pass 1, but pass 2 could not re-read its bytes: {reason}")
        rows.append(row)
    return rows


DOWNLOAD_STATUSES = frozenset({Status.DOWNLOAD_ERROR.value, Status.HTTP_ERROR.value,
                               Status.TIMEOUT.value, Status.CONNECTION_ERROR.value})


def shard_stats(input_shard: str, statuses: list[str], labels: list[str | None], kept: int) -> dict[str, Any]:
    """``_stats.json`` of a curated shard, with img2dataset's keys in img2dataset's meanings
    (``count``: input pairs, ``successes``: pairs written to the shard, ``failed_to_download``,
    ``status_dict``: pairs per outcome) beside pairsift's own (``by_label``: kept pairs per label)."""
    outcomes = Counter(label or status for status, label in zip(statuses, labels, strict=True))
    return {
        "count": len(statuses),
        "successes": kept,
        "failed_to_download": sum(1 for status in statuses if status in DOWNLOAD_STATUSES),
        "status_dict": dict(sorted(outcomes.items())),
        "input_shard": input_shard,
    }


def run_pass2(
    shards: list[InputShard], cfg: PairsiftConfig, layout: RunLayout, options: PipelineOptions
) -> dict[str, int]:
    todo = [
        (i, s) for i, s in enumerate(shards)
        if not (shard_complete(layout.shards, output_name(i)) and exists(layout.audit_file(output_name(i))))
    ]
    if len(todo) < len(shards):
        log.info("pass 2: %d of %d shards already curated, skipping them", len(shards) - len(todo), len(shards))
    if not todo:
        return {}
    forget_tally(layout)
    pipeline = new_pipeline(options, "pass 2")
    build_pass2(pipeline, shards, todo, cfg, layout)
    written = [layout.audit_file(output_name(i)) for i, _ in todo]
    # an interrupted shard's audit file is written again: it counts once the job has ended
    fresh = [path for path in written if not exists(path)]
    with StageProgress("pass 2 (curate)", total=len(shards), done=len(shards) - len(todo),
                       unit="shards") as progress:
        with following_files(progress, fresh, exists, poll=is_local(options)):
            counters = run_pipeline(pipeline, "pass 2", must_exist=written)
        progress.advance(len(written) - len(fresh))
    return counters


def forget_tally(layout: RunLayout) -> None:
    """New audit rows make the tally job's counts and kept sample stale: it runs again."""
    from pairsift.models.storage.atomic import remove

    for path in (layout.tally, layout.final_sample, layout.gallery):
        remove(path)


def build_pass2(pipeline: beam.Pipeline, shards: list[InputShard],
                todo: list[tuple[int, InputShard]], cfg: PairsiftConfig, layout: RunLayout) -> None:
    schema = audit_schema([layout.embeddings_file(s.name) for s in shards],
                          [layout.scores_file(s.name) for s in shards], cfg.translate.target_langs)
    (
        pipeline
        | "InputShards" >> beam.Create(todo)
        | "Spread" >> beam.Reshuffle()
        | "Curate" >> beam.ParDo(CurateShard(layout, cfg, schema))
    )
