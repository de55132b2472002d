"""Score pass (Beam, parallel over embedding shards) and the global mixture fit.

Each shard's scores land in OUT/scores/<shard>.parquet (its completion marker); the losses
of all unique pairs meet in one histogram (CombineGlobally), on which the driver fits the
beta mixture: exact up to binning and independent of the number of pairs. A second, joint
(loss, uncertainty) histogram gives the division's global uncertainty threshold, so every
pass-2 shard divides with the same one.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.options.pipeline_options import PipelineOptions

from pairsift.models.config import DivisionConfig, PairsiftConfig
from pairsift.models.noise.consistency import CONSISTENCY_RANGE
from pairsift.models.records import Status, is_embedding_column
from pairsift.models.storage.atomic import exists, list_files, read_json, write_json
from pairsift.models.storage.tables import embedding_matrix, read_table, write_rows
from pairsift.pipeline.layout import RunLayout
from pairsift.pipeline.options import new_pipeline, run_pipeline
from pairsift.transforms.score import (
    JointHistogram,
    LossHistogram,
    UncertaintyHistogram,
    score_in_chunks,
)

log = logging.getLogger(__name__)

HISTOGRAM_FILE = "loss_histogram.json"
MIXTURE_FILE = "mixture.json"
UNCERTAINTY_HISTOGRAM_FILE = "uncertainty_histogram.json"
NULL_HISTOGRAM_FILE = "null_histogram.json"  # losses of caption-swapped pairs
DIVISION_FILE = "division.json"
CONSISTENCY_HISTOGRAM_FILE = "consistency_histogram.json"
NULL_CONSISTENCY_HISTOGRAM_FILE = "null_consistency_histogram.json"
JOINT_CONSISTENCY_FILE = "loss_consistency_histogram.json"  # for the fused noise-share cut
UNCERTAINTY_BINS = (128, 1000)  # (loss, u): u to 0.001; the loss axis only picks kept bins


def division_uncertainty(scores: dict[str, np.ndarray], division: DivisionConfig) -> np.ndarray:
    """The u the division reads (models.division.view_uncertainty); where a dual-view u is
    missing (NaN) the single-view one stands in, so the histogram never sees a NaN."""
    from pairsift.models.noise.division import view_uncertainty

    u = view_uncertainty(scores, division)
    single = np.asarray(scores["uncertainty"], dtype=np.float64)
    return np.where(np.isfinite(u), u, single)


def shard_matrices(table: pa.Table) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Embedding matrices of a shard's ok rows; target-language rows may be missing (masked)."""
    matrices: dict[str, np.ndarray] = {}
    present: dict[str, np.ndarray] = {}
    for name in table.column_names:
        if not is_embedding_column(name):
            continue
        nulls = table.column(name).is_null().to_numpy(zero_copy_only=False)
        matrices[name] = embedding_matrix(table, name, fill_null=True)
        present[name] = ~np.asarray(nulls, dtype=bool)
    return matrices, present


def shard_null_losses(
    state: Any, matrices: dict[str, np.ndarray], keys: list[str], other: np.ndarray
) -> np.ndarray:
    """English-view losses of the rows with their captions swapped among themselves (row i
    gets caption ``other[i]``, a derangement).

    The empirical null of the mixture (models/noise/null.py): a swapped pair is a mismatch by
    construction. Row i keeps its image and key, so it is scored by the heads of its fold.
    """
    swapped = {"image_emb": matrices["image_emb"], "text_emb": matrices["text_emb"][other]}
    return score_in_chunks(state, swapped, [], keys=keys)["loss"]


def _shard_seed(seed: int, shard_name: str) -> int:
    return (seed * 1_000_003 + zlib.crc32(shard_name.encode("utf-8"))) % (2**32)


class ScoreShard(beam.DoFn):
    """Scores one embedding shard with the frozen scoring state.

    Yields the (loss, uncertainty, null loss, consistency, null consistency) arrays of its
    unique pairs for the global histograms. The null columns (``null_loss``,
    ``null_consistency``: the same rows with their captions swapped, NaN for duplicates) only
    when the mixture uses the empirical null; the neighbour consistency (``consistency``)
    only when the fit saved anchors (models/noise/consistency.py).
    """

    def __init__(
        self, layout: RunLayout, langs: list[str], division: DivisionConfig, null: bool, seed: int
    ) -> None:
        self.layout = layout
        self.langs = langs
        self.division = division
        self.null = null
        self.seed = seed
        self.state: Any = None
        self.neighbours: Any = None
        self.duplicates: set[tuple[str, str]] = set()

    def setup(self) -> None:
        from pairsift.models.noise.consistency import NeighbourIndex
        from pairsift.models.training.scoring import ScoringState
        from pairsift.pipeline.fit import NEIGHBOURS_DIR

        self.state = ScoringState.load(self.layout.fit_file("scoring"))
        anchors = self.layout.fit_file(NEIGHBOURS_DIR)
        self.neighbours = NeighbourIndex.load(anchors) if NeighbourIndex.exists(anchors) else None
        # a language the fit saw too few translations of has no bank: score English view only
        self.langs = [lang for lang in self.langs if lang in self.state.bank_text_tgt]
        dups = read_table(self.layout.fit_file("duplicates.parquet"))
        self.duplicates = set(
            zip(dups.column("source_shard").to_pylist(), dups.column("key").to_pylist(), strict=True)
        )

    def _unique(
        self, scores: dict[str, np.ndarray], duplicate: np.ndarray
    ) -> tuple[np.ndarray, ...]:
        if not len(duplicate):
            return tuple(np.zeros(0) for _ in range(5))
        u = division_uncertainty(scores, self.division)

        def unique(name: str) -> np.ndarray:
            return np.asarray(scores[name])[~duplicate] if name in scores else np.zeros(0)

        return (unique("loss"), u[~duplicate], unique("null_loss"), unique("consistency"),
                unique("null_consistency"))

    def process(self, shard_name: str) -> Iterator[tuple[np.ndarray, ...]]:
        out_path = self.layout.scores_file(shard_name)
        if exists(out_path):  # resumed run: reuse the scores, still feed the histograms
            done = read_table(out_path)
            cols = {n: np.asarray(done.column(n).to_numpy(zero_copy_only=False)) for n in done.column_names if n != "key"}
            yield self._unique(cols, cols.pop("duplicate").astype(bool))
            return
        table = read_table(self.layout.embeddings_file(shard_name))
        table = table.filter(pc.equal(table.column("status"), Status.OK.value)) if table.num_rows else table
        keys = table.column("key").to_pylist() if table.num_rows else []
        duplicate = np.array([(shard_name, k) in self.duplicates for k in keys], dtype=bool)
        scores: dict[str, np.ndarray] = {}
        if keys:
            matrices, present = shard_matrices(table)
            scores = score_in_chunks(self.state, matrices, self.langs, keys=keys)
            for lang in self.langs:  # a pair without a translation has no target-language view
                mask = present.get(f"text_emb_{lang}")
                if mask is None:
                    continue
                for name in scores:
                    if name.endswith(f"_{lang}") or name == "translation_consistency":
                        scores[name] = np.where(mask, scores[name], np.nan)
            scores.update(self._null_scores(shard_name, matrices, keys, duplicate))
        rows = []
        for i, key in enumerate(keys):
            row: dict[str, Any] = {"key": key, "duplicate": bool(duplicate[i])}
            row.update({name: float(values[i]) for name, values in scores.items()})
            rows.append(row)
        write_rows(out_path, rows, columns=["key", "duplicate", *sorted(scores)] if rows else ["key", "duplicate", "loss"])
        beam.metrics.Metrics.counter("pairsift", "scored").inc(len(rows))
        yield self._unique(scores, duplicate)


    def _null_scores(
        self, shard_name: str, matrices: dict[str, np.ndarray], keys: list[str],
        duplicate: np.ndarray,
    ) -> dict[str, np.ndarray]:
        """Consistency of the pairs, and the loss and consistency of the unique pairs with
        their captions swapped among themselves (NaN for duplicates)."""
        from pairsift.models.noise.null import derangement

        out: dict[str, np.ndarray] = {}
        image, text = matrices["image_emb"], matrices["text_emb"]
        anchor_rows = None
        if self.neighbours is not None:
            anchor_rows = self.neighbours.rows_of(keys)
            out["consistency"] = self.neighbours.score(image, text, anchor_rows, anchor_rows)
        unique = np.flatnonzero(~duplicate)
        if not self.null or len(unique) < 2:
            return out
        swap = unique[derangement(len(unique), _shard_seed(self.seed, shard_name))]
        null = np.full(len(keys), np.nan)
        null[unique] = shard_null_losses(
            self.state, {"image_emb": image[unique], "text_emb": text},
            [keys[i] for i in unique], swap,
        )
        out["null_loss"] = null
        if anchor_rows is not None:
            null_c = np.full(len(keys), np.nan)
            null_c[unique] = self.neighbours.score(
                image[unique], text[swap], anchor_rows[unique], anchor_rows[swap]
            )
            out["null_consistency"] = null_c
        return out


class WriteHistogram(beam.DoFn):
    def __init__(self, path: str, lo: float, hi: float) -> None:
        self.path, self.lo, self.hi = path, lo, hi

    def process(self, counts: np.ndarray) -> Iterator[int]:
        write_json(self.path, {"lo": self.lo, "hi": self.hi, "counts": counts.tolist()})
        yield int(counts.sum())


def _losses(element: tuple[np.ndarray, ...]) -> np.ndarray:
    return element[0]


def _null_losses(element: tuple[np.ndarray, ...]) -> np.ndarray:
    return element[2]


def _finite(values: np.ndarray) -> np.ndarray:
    """A shard with fewer than 3 anchors to compare with has NaN consistency: not counted."""
    return values[np.isfinite(values)]


def _consistency(element: tuple[np.ndarray, ...]) -> np.ndarray:
    return _finite(element[3])


def _null_consistency(element: tuple[np.ndarray, ...]) -> np.ndarray:
    return _finite(element[4])


def _loss_and_consistency(element: tuple[np.ndarray, ...]) -> tuple[np.ndarray, np.ndarray]:
    loss, consistency = element[0], element[3]
    if consistency.size != loss.size:
        return np.zeros(0), np.zeros(0)
    finite = np.isfinite(consistency)
    return loss[finite], consistency[finite]


def run_score_pass(cfg: PairsiftConfig, layout: RunLayout, options: PipelineOptions) -> dict[str, int]:
    from pairsift.models.training.scoring import loss_range

    shard_names = [p.rsplit("/", 1)[-1][: -len(".parquet")] for p in list_files(layout.embeddings, ".parquet")]
    lo, hi = loss_range(cfg.train)
    pipeline = new_pipeline(options)
    scored = (
        pipeline
        | "EmbeddingShards" >> beam.Create(shard_names)
        | "Spread" >> beam.Reshuffle()
        | "Score" >> beam.ParDo(
            ScoreShard(
                layout, list(cfg.translate.target_langs), cfg.division,
                cfg.mixture.null_model == "shuffled", cfg.seed,
            )
        )
    )
    (
        scored
        | "NullLosses" >> beam.Map(_null_losses)
        | "NullHistogram" >> beam.CombineGlobally(LossHistogram(lo, hi, cfg.mixture.bins))
        | "SaveNull" >> beam.ParDo(WriteHistogram(layout.fit_file(NULL_HISTOGRAM_FILE), lo, hi))
    )
    (
        scored
        | "Losses" >> beam.Map(_losses)
        | "Histogram" >> beam.CombineGlobally(LossHistogram(lo, hi, cfg.mixture.bins))
        | "SaveHistogram" >> beam.ParDo(WriteHistogram(layout.fit_file(HISTOGRAM_FILE), lo, hi))
    )
    (
        scored
        | "JointHistogram" >> beam.CombineGlobally(UncertaintyHistogram(lo, hi, UNCERTAINTY_BINS))
        | "SaveJoint" >> beam.ParDo(
            WriteHistogram(layout.fit_file(UNCERTAINTY_HISTOGRAM_FILE), lo, hi)
        )
    )
    c_lo, c_hi = CONSISTENCY_RANGE
    for name, values, path in (
        ("Consistency", _consistency, CONSISTENCY_HISTOGRAM_FILE),
        ("NullConsistency", _null_consistency, NULL_CONSISTENCY_HISTOGRAM_FILE),
    ):
        (
            scored
            | name >> beam.Map(values)
            | f"{name}Histogram" >> beam.CombineGlobally(
                LossHistogram(c_lo, c_hi, cfg.consistency.bins)
            )
            | f"Save{name}" >> beam.ParDo(WriteHistogram(layout.fit_file(path), c_lo, c_hi))
        )
    (
        scored
        | "LossAndConsistency" >> beam.Map(_loss_and_consistency)
        | "JointConsistency" >> beam.CombineGlobally(
            JointHistogram((lo, hi), CONSISTENCY_RANGE, (UNCERTAINTY_BINS[0], cfg.consistency.bins))
        )
        | "SaveJointConsistency" >> beam.ParDo(
            WriteHistogram(layout.fit_file(JOINT_CONSISTENCY_FILE), lo, hi)
        )
    )
    return run_pipeline(pipeline)


def fit_mixture(cfg: PairsiftConfig, layout: RunLayout) -> dict[str, Any]:
    """Beta mixture on the global loss histogram → OUT/fit/mixture.json."""
    from pairsift.models.noise.division import threshold_from_histogram
    from pairsift.models.noise.mixture import BetaMixture
    from pairsift.pipeline.summary import fit_warnings

    hist = read_json(layout.fit_file(HISTOGRAM_FILE))
    counts = np.asarray(hist["counts"], dtype=np.int64)
    null_counts = None
    if cfg.mixture.null_model == "shuffled":
        null_counts = np.asarray(read_json(layout.fit_file(NULL_HISTOGRAM_FILE))["counts"], dtype=np.int64)
        if null_counts.sum() < 2:  # every shard held a single pair: no swap was possible
            log.warning("mixture: too few null losses (%d), using the two components", int(null_counts.sum()))
            null_counts = None
    mixture = BetaMixture.fit_histogram(counts, hist["lo"], hist["hi"], cfg.mixture, null_counts)
    _attach_consistency(mixture, cfg, layout)
    params = mixture.to_dict()
    write_json(layout.fit_file(MIXTURE_FILE), params)
    log.info("mixture: estimated noise ratio %.3f over %d pairs", mixture.noise_ratio, int(counts.sum()))
    for warning in fit_warnings(params):
        log.warning("mixture: %s", warning)
    joint = read_json(layout.fit_file(UNCERTAINTY_HISTOGRAM_FILE))
    threshold = threshold_from_histogram(
        np.asarray(joint["counts"], dtype=np.int64), joint["lo"], joint["hi"], mixture, cfg.division
    )
    keep_posterior = _keep_posterior(mixture, cfg, layout)
    write_json(
        layout.fit_file(DIVISION_FILE),
        {"uncertainty_threshold": threshold, "uncertainty_quantile": cfg.division.uncertainty_quantile,
         "keep_posterior": keep_posterior},
    )
    log.info("division: uncertainty threshold %.3f", threshold)
    return params | {"uncertainty_threshold": threshold, "keep_posterior": keep_posterior}


def _attach_consistency(mixture: Any, cfg: PairsiftConfig, layout: RunLayout) -> None:
    """Fuse the neighbour consistency into the mixture's posterior when the score pass
    measured it (:func:`pairsift.models.training.epoch_division.fuse_consistency` says where it applies)."""
    from pairsift.models.training.epoch_division import fuse_consistency

    path = layout.fit_file(CONSISTENCY_HISTOGRAM_FILE)
    if not exists(path):
        return
    counts = np.asarray(read_json(path)["counts"], dtype=np.int64)
    null_counts = np.asarray(
        read_json(layout.fit_file(NULL_CONSISTENCY_HISTOGRAM_FILE))["counts"], dtype=np.int64
    )
    if fuse_consistency(mixture, counts, null_counts, cfg):
        log.info("mixture: fused with the neighbour consistency of %d pairs", int(counts.sum()))


def _keep_posterior(mixture: Any, cfg: PairsiftConfig, layout: RunLayout) -> float | None:
    """The fused posterior below which a pair falls outside the null's clean count, read
    off the joint (loss, consistency) histogram at the cells' centres (exact up to binning:
    every shard then cuts at one global value); None where no fused count applies."""
    from pairsift.models.noise.consistency import share_threshold
    from pairsift.models.noise.division import share_cut
    from pairsift.models.noise.histogram import bin_centres

    if mixture.consistency is None or share_cut(mixture, cfg.division) is None:
        return None
    joint = read_json(layout.fit_file(JOINT_CONSISTENCY_FILE))
    counts = np.asarray(joint["counts"], dtype=np.float64)
    losses = bin_centres(joint["lo"], joint["hi"], counts.shape[0])
    values = bin_centres(*CONSISTENCY_RANGE, counts.shape[1])
    p = mixture.posterior(np.repeat(losses, values.size), np.tile(values, losses.size))
    return share_threshold(p, counts.ravel(), 1.0 - mixture.noise_ratio)
