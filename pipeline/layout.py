"""Where everything lives under OUT (DESIGN §3). One place, so stages agree on names."""

from __future__ import annotations

from dataclasses import dataclass

from pairsift.models.storage.atomic import join


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
    def config(self) -> str:
        return join(self.root, "config.json")

    def embeddings_file(self, shard_name: str) -> str:
        return join(self.embeddings, f"{shard_name}.parquet")

    def scores_file(self, shard_name: str) -> str:
        return join(self.scores, f"{shard_name}.parquet")

    def audit_file(self, shard_name: str) -> str:
        return join(self.audit, f"{shard_name}.parquet")

    def fit_file(self, name: str) -> str:
        return join(self.fit, name)
