"""Where everything lives under OUT. One place, so stages agree on every artifact's name."""

from __future__ import annotations

from dataclasses import dataclass

from pairsift.models.storage.atomic import join
from pairsift.pipeline.io.shard_writer import shard_paths


@dataclass(frozen=True)
class RunLayout:
    root: str

    @property
    def embeddings(self) -> str:
        return join(self.root, "embeddings")

    @property
    def scores(self) -> str:
        return join(self.root, "scores")

    @property
    def fit(self) -> str:
        return join(self.root, "fit")

    @property
    def shards(self) -> str:
        return join(self.root, "shards")

    @property
    def audit(self) -> str:
        return join(self.root, "audit")

    @property
    def model(self) -> str:
        return join(self.root, "model")

    @property
    def summary(self) -> str:
        return join(self.root, "summary.json")

    @property
    def report(self) -> str:
        return join(self.root, "report.html")

    @property
    def input_shards(self) -> str:
        """The input's shards as the run found them at its start (a resumed run keeps them)."""
        return join(self.root, "input_shards.json")

    @property
    def lock(self) -> str:
        """One run per output folder: the owner's host and pid."""
        return join(self.root, "_run.lock.json")

    @property
    def config(self) -> str:
        return join(self.root, "config.json")

    def embeddings_file(self, shard_name: str) -> str:
        return join(self.embeddings, f"{shard_name}.parquet")

    def scores_file(self, shard_name: str) -> str:
        return join(self.scores, f"{shard_name}.parquet")

    def shard_stats(self, output_name: str) -> str:
        """A curated shard's ``_stats.json``, written last: the shard's completion marker."""
        return shard_paths(self.shards, output_name)["stats"]

    @property
    def images(self) -> str:
        """Pass 1's copy of a table shard's images (fetched URLs, named files)."""
        return join(self.root, "images")

    def images_file(self, shard_name: str) -> str:
        """An uncompressed tar of the shard's embedded images, which pass 2 copies by range."""
        return join(self.images, f"{shard_name}.tar")

    def audit_file(self, shard_name: str) -> str:
        return join(self.audit, f"{shard_name}.parquet")

    @property
    def keep(self) -> str:
        """A run from embeddings: the kept pairs' ids and verdicts, per part."""
        return join(self.root, "keep")

    def keep_file(self, part_name: str) -> str:
        return join(self.keep, f"{part_name}.parquet")

    def fit_file(self, name: str) -> str:
        return join(self.fit, name)

    # OUT/fit: what the fit step, the score pass and the noise fit leave for later stages
    @property
    def fit_done(self) -> str:
        """The fit step's completion marker (its summary, as JSON)."""
        return self.fit_file("_fit_done.json")

    @property
    def train_info(self) -> str:
        return self.fit_file("train.json")

    def duplicates_file(self, shard_name: str) -> str:
        """A shard's exact duplicates (key, index); absent for a shard with none."""
        return join(self.fit, "duplicates", f"{shard_name}.parquet")

    @property
    def fit_sample(self) -> str:
        """The unique pairs the fit trains on: (source_shard, key, index, row), input order."""
        return self.fit_file("sample.parquet")

    @property
    def dedup_counts(self) -> str:
        return self.fit_file("dedup_counts.json")

    @property
    def dedup_done(self) -> str:
        """The dedup job's completion marker (its counts), written by the driver last."""
        return self.fit_file("_dedup_done.json")

    @property
    def tally(self) -> str:
        """Counts over every audit row (summary.json's pairs and detection figures)."""
        return self.fit_file("tally.json")

    @property
    def gallery(self) -> str:
        """The pairs report.html shows, picked from the audit by the tally job."""
        return self.fit_file("gallery.json")

    @property
    def final_sample(self) -> str:
        """The kept pairs the final model trains on, with their clean posteriors."""
        return self.fit_file("final_sample.parquet")

    @property
    def heads(self) -> str:
        return self.fit_file("heads")

    @property
    def scoring_state(self) -> str:
        return self.fit_file("scoring")

    @property
    def neighbours(self) -> str:
        """The neighbour-consistency anchors."""
        return self.fit_file("neighbours")

    def translation_anchors(self, lang: str) -> str:
        """One target language's translation-margin anchors (models/noise/translation_margin.py)."""
        return join(self.fit, "translations", lang)

    @property
    def fit_consistency(self) -> str:
        """Each fit pair's neighbour consistency (source_shard, key, consistency), by shard."""
        return self.fit_file("consistency.parquet")

    @property
    def histograms(self) -> str:
        """Every histogram the noise fit reads, summed over the shards."""
        return self.fit_file("histograms.json")

    @property
    def noise_fit(self) -> str:
        """The one noise fit that labels every pair."""
        return self.fit_file("noise_fit.json")

    @property
    def final_done(self) -> str:
        return self.fit_file("_final_done.json")
