"""Score pass (Beam, parallel over embedding shards) and the global noise fit.

Each shard's scores land in OUT/scores/<shard>.parquet (its completion marker); the
:class:`~pairsift.models.noise.fit.NoiseHistograms` of every shard's unique pairs meet in one
CombineGlobally, and the driver fits the one :class:`~pairsift.models.noise.fit.NoiseFit`
on their sum (mixture, null, fused consistency, global u_thr and noise-share cut) that
labels every pair in pass 2: exact up to binning and independent of the number of pairs.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterator
from functools import partial
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.options.pipeline_options import PipelineOptions

from pairsift.models.config import PairsiftConfig
from pairsift.models.noise.division import division_uncertainty
from pairsift.models.noise.fit import NoiseFit, NoiseHistograms
from pairsift.models.records import Status, is_embedding_column
from pairsift.models.storage.atomic import exists, read_json, write_json
from pairsift.models.storage.tables import embedding_matrix, read_matching, read_table, write_table
from pairsift.models.training.scoring import loss_range, target_view_columns
from pairsift.pipeline.combiners import SumOf, WriteSum
from pairsift.pipeline.layout import RunLayout
from pairsift.pipeline.options import is_local, new_pipeline, run_pipeline, worker_threads
from pairsift.pipeline.progress import StageProgress, following_files
from pairsift.transforms.score import (
    score_in_chunks,
)

log = logging.getLogger(__name__)

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

    Yields the (loss, uncertainty, null loss, consistency) arrays of its unique pairs for
    the global histograms. The null column (``null_loss``: the same rows with their captions
    swapped, NaN for duplicates) only when the mixture uses the empirical null; the neighbour
    consistency (``consistency``) only when the fit saved anchors (models/noise/consistency.py).
    """

    def __init__(self, layout: RunLayout, cfg: PairsiftConfig) -> None:
        self.layout = layout
        self.cfg = cfg
        self.langs = list(cfg.translate.target_langs)
        self.null = cfg.mixture.null_model == "shuffled"
        self.seed = cfg.seed
        self.state: Any = None
        self.neighbours: Any = None
        self.translations: dict[str, Any] = {}

    def setup(self) -> None:
        from pairsift.models.noise.consistency import NeighbourIndex
        from pairsift.models.noise.translation_margin import TranslationIndex
        from pairsift.models.threads import set_torch_threads
        from pairsift.models.training.scoring import ScoringState

        set_torch_threads(self.cfg.encoder.threads)
        self.state = ScoringState.load(self.layout.scoring_state)
        anchors = self.layout.neighbours
        self.neighbours = NeighbourIndex.load(anchors) if NeighbourIndex.exists(anchors) else None
        # a language the fit saw too few translations of has no bank: score English view only
        self.langs = [lang for lang in self.langs if lang in self.state.bank_text_tgt]
        self.translations = {
            lang: TranslationIndex.load(self.layout.translation_anchors(lang)) for lang in self.langs
            if TranslationIndex.exists(self.layout.translation_anchors(lang))
        }

    def _duplicate_mask(self, shard_name: str, index: np.ndarray) -> np.ndarray:
        """Which of the shard's rows (by input position) the dedup job marked: its own
        small side file, never a list of the whole dataset's duplicates."""
        path = self.layout.duplicates_file(shard_name)
        if not exists(path):
            return np.zeros(len(index), dtype=bool)
        marked = read_table(path, columns=["index"]).column("index").to_numpy(zero_copy_only=False)
        return np.isin(index, marked)

    def _histograms(
        self, scores: dict[str, np.ndarray], duplicate: np.ndarray
    ) -> NoiseHistograms:
        """The shard's share of the global histograms: its unique pairs only."""
        bounds = loss_range(self.cfg.train)
        if not len(duplicate) or not scores:
            return NoiseHistograms.empty(bounds, self.cfg.mixture.bins, self.cfg.consistency.bins)
        unique = ~duplicate

        def values(name: str) -> np.ndarray | None:
            return np.asarray(scores[name])[unique] if name in scores else None

        u = division_uncertainty(scores, self.cfg.division)[unique]
        out = NoiseHistograms.of(
            bounds, self.cfg, values("loss"), u, values("null_loss"), values("consistency"),
        )
        out.languages = language_histograms(scores, np.flatnonzero(unique), self.langs, self.cfg)
        return out

    def process(self, shard_name: str) -> Iterator[NoiseHistograms]:
        """Why one piece: resume, read, score, mask missing target views, write: each step feeds
        the next within one shard.
        """
        out_path = self.layout.scores_file(shard_name)
        if exists(out_path):  # resumed run: reuse the scores, still feed the histograms
            done = read_table(out_path)
            cols = {n: np.asarray(done.column(n).to_numpy(zero_copy_only=False)) for n in done.column_names if n != "key"}
            yield self._histograms(cols, cols.pop("duplicate").astype(bool))
            return
        table = read_table(self.layout.embeddings_file(shard_name))
        table = table.filter(pc.equal(table.column("status"), Status.OK.value)) if table.num_rows else table
        keys = table.column("key").to_pylist() if table.num_rows else []
        index = np.asarray(table.column("index").to_numpy(zero_copy_only=False)) if keys else np.zeros(0)
        duplicate = self._duplicate_mask(shard_name, index)
        scores: dict[str, np.ndarray] = {}
        if keys:
            matrices, present = shard_matrices(table)
            scores = score_in_chunks(self.state, matrices, self.langs, keys=keys)
            for lang in self.langs:  # a pair without a translation has no target-language view
                mask = present.get(f"text_emb_{lang}")
                if mask is None:
                    continue
                for name in target_view_columns(scores, lang):
                    scores[name] = np.where(mask, scores[name], np.nan)
            scores.update(self._null_scores(shard_name, matrices, keys, duplicate))
            for lang in self.langs:
                scores.update(self._translation_scores(shard_name, lang, matrices, present,
                                                       keys, duplicate))
        names = sorted(scores) if keys else ["loss"]
        columns: dict[str, Any] = {"key": pa.array(keys, pa.string()),
                                   "duplicate": pa.array(duplicate.astype(bool), pa.bool_())}
        columns.update({name: pa.array(np.asarray(scores.get(name, np.zeros(0)), dtype=np.float64))
                        for name in names})
        write_table(out_path, pa.table(columns))
        beam.metrics.Metrics.counter("pairsift", "scored").inc(len(keys))
        yield self._histograms(scores, duplicate)


    def _null_scores(
        self, shard_name: str, matrices: dict[str, np.ndarray], keys: list[str],
        duplicate: np.ndarray,
    ) -> dict[str, np.ndarray]:
        """Consistency of the pairs (the fit's, searched again only for pairs outside the fit
        sample), and the loss of the unique pairs with their captions swapped among
        themselves (NaN for duplicates). The consistency null is the fit's (its histogram
        is saved with the anchors): it reads no heads, so it needs no search here."""
        from pairsift.models.noise.null import derangement

        out: dict[str, np.ndarray] = {}
        image, text = matrices["image_emb"], matrices["text_emb"]
        if self.neighbours is not None:
            out["consistency"] = self._consistency(shard_name, keys, image, text, duplicate)
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
        return out

    def _translation_scores(
        self, shard_name: str, lang: str, matrices: dict[str, np.ndarray],
        present: dict[str, np.ndarray], keys: list[str], duplicate: np.ndarray,
    ) -> dict[str, np.ndarray]:
        """A target language's translation margin (NaN without a translation), and its null:
        the unique translated pairs with their translations swapped among themselves, scored
        by the image–target loss and by the margin (the per-language fit's two nulls)."""
        from pairsift.models.noise.null import derangement

        name = f"text_emb_{lang}"
        if name not in matrices:
            return {}
        has = present[name] & present.get("text_emb_ml", np.zeros(len(keys), dtype=bool))
        n = len(keys)
        out = {f"translation_margin_{lang}": np.full(n, np.nan),
               f"null_loss_{lang}": np.full(n, np.nan),
               f"null_translation_margin_{lang}": np.full(n, np.nan)}
        index = self.translations.get(lang)
        source, target = matrices.get("text_emb_ml"), matrices[name]
        rows = np.flatnonzero(has)
        if index is not None and len(rows):
            own = index.rows_of([keys[i] for i in rows])
            out[f"translation_margin_{lang}"][rows] = index.margin(source[rows], target[rows], own)
        unique = np.flatnonzero(has & ~duplicate)
        if not self.null or len(unique) < 2:
            return out
        swap = unique[derangement(len(unique), _shard_seed(self.seed + 1, f"{shard_name}:{lang}"))]
        swapped = {"image_emb": matrices["image_emb"][unique], "text_emb": matrices["text_emb"][unique],
                   name: target[swap]}
        null = score_in_chunks(self.state, swapped, [lang], keys=[keys[i] for i in unique])
        out[f"null_loss_{lang}"][unique] = null[f"loss_{lang}"]
        if index is not None:
            exclude = np.stack([index.rows_of([keys[i] for i in unique]),
                                index.rows_of([keys[i] for i in swap])], axis=1)
            out[f"null_translation_margin_{lang}"][unique] = index.margin(
                source[unique], target[swap], exclude)
        return out

    def _consistency(
        self, shard_name: str, keys: list[str], image: np.ndarray, text: np.ndarray,
        duplicate: np.ndarray,
    ) -> np.ndarray:
        """Each unique pair's neighbour consistency: the fit's value, or a search for a pair
        the fit did not sample (NaN for duplicates: no histogram or label reads theirs)."""
        known = read_matching(self.layout.fit_consistency, "source_shard", shard_name,
                              ["key", "consistency"])
        by_key = dict(zip(known.column("key").to_pylist(),
                          known.column("consistency").to_numpy(zero_copy_only=False), strict=True))
        out = np.asarray([by_key.get(key, np.nan) for key in keys], dtype=np.float64)
        missing = np.flatnonzero(np.asarray([key not in by_key for key in keys], dtype=bool) & ~duplicate)
        if len(missing):
            rows = self.neighbours.rows_of([keys[i] for i in missing])
            out[missing] = self.neighbours.score(image[missing], text[missing], rows, rows)
            beam.metrics.Metrics.counter("pairsift", "consistency_searched").inc(len(missing))
        return out


def language_histograms(scores: dict[str, np.ndarray], unique: np.ndarray, langs: list[str],
                        cfg: PairsiftConfig) -> dict[str, NoiseHistograms]:
    """Each target language's histograms over the unique pairs that carry its translation:
    the image–target loss and u, their nulls, and the translation margin."""
    from pairsift.models.noise.fit import language_view
    from pairsift.models.noise.translation_margin import MARGIN_RANGE

    out: dict[str, NoiseHistograms] = {}
    for lang in langs:
        view = language_view(scores, lang)
        if view is None:
            continue
        rows = unique[np.isfinite(view["loss"][unique]) & np.isfinite(view["uncertainty"][unique])]

        def values(name: str, rows: np.ndarray = rows) -> np.ndarray | None:
            return np.asarray(scores[name])[rows] if name in scores else None

        out[lang] = NoiseHistograms.of(
            loss_range(cfg.train), cfg, view["loss"][rows], view["uncertainty"][rows],
            values(f"null_loss_{lang}"), view["consistency"][rows] if "consistency" in view else None,
            values(f"null_translation_margin_{lang}"), consistency_range=MARGIN_RANGE,
        )
    return out


def run_score_pass(cfg: PairsiftConfig, layout: RunLayout, options: PipelineOptions) -> dict[str, int]:
    from pairsift.pipeline.dedup import embedding_shard_names

    shard_names = embedding_shard_names(layout)
    pipeline = new_pipeline(options, "score pass")
    build_score_pass(pipeline, worker_threads(cfg, options), layout, shard_names)
    # a resumed run's shards already scored count as done; the rest count as their files appear
    scored = [layout.scores_file(name) for name in shard_names]
    waiting = [path for path in scored if not exists(path)]
    with StageProgress("score pass", total=len(scored), done=len(scored) - len(waiting),
                       unit="shards") as progress:
        with following_files(progress, waiting, exists, poll=is_local(options)):
            return run_pipeline(pipeline, "score pass", must_exist=[layout.histograms])


def build_score_pass(pipeline: beam.Pipeline, cfg: PairsiftConfig, layout: RunLayout,
                     shard_names: list[str]) -> None:
    (
        pipeline
        | "EmbeddingShards" >> beam.Create(shard_names)
        | "Spread" >> beam.Reshuffle()
        | "Score" >> beam.ParDo(ScoreShard(layout, cfg))
        | "Histograms" >> beam.CombineGlobally(SumOf(partial(
            NoiseHistograms.empty, loss_range(cfg.train), cfg.mixture.bins, cfg.consistency.bins)))
        | "SaveHistograms" >> beam.ParDo(WriteSum(layout.histograms))
    )


def noise_histograms(layout: RunLayout) -> NoiseHistograms:
    """The global histograms the noise fit reads: the score pass's sums, with the neighbour
    consistency's null counts that the fit saved beside its anchors."""
    from pairsift.models.noise.neighbour_index import NeighbourIndex

    hists = NoiseHistograms.from_dict(read_json(layout.histograms))
    if NeighbourIndex.exists(layout.neighbours):  # the fit's null (ScoreShard._null_scores)
        null_counts = NeighbourIndex.meta(layout.neighbours).get("null_counts")
        if null_counts is not None:  # absent: anchors saved by an earlier version
            hists.null_consistency = np.asarray(null_counts, dtype=np.int64)
    return hists


def fit_noise(cfg: PairsiftConfig, layout: RunLayout) -> NoiseFit:
    """The one noise fit, on the global histograms → OUT/fit/noise_fit.json."""
    from pairsift.pipeline.summary import fit_warnings

    hists = noise_histograms(layout)
    if cfg.mixture.null_model == "shuffled" and hists.null_loss.sum() < 2:
        log.warning("mixture: too few null losses (%d), using the two components",
                    int(hists.null_loss.sum()))
    fit = NoiseFit.fit(hists, cfg)
    write_json(layout.noise_fit, fit.to_dict())
    if fit.mixture is not None:
        log.info("mixture: estimated noise ratio %.3f over %d pairs", fit.mixture.noise_ratio,
                 hists.pairs)
        if fit.mixture.consistency is not None:
            log.info("mixture: fused with the neighbour consistency of %d pairs",
                     int(hists.consistency.sum()))
        for warning in fit_warnings(fit.mixture.to_dict()):
            log.warning("mixture: %s", warning)
    if fit.uncertainty_threshold is not None:
        log.info("division: uncertainty threshold %.3f", fit.uncertainty_threshold)
    return fit
