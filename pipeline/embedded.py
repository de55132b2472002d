"""Label pairs that are already embedded, through the stages `pairsift run` ships.

A run that starts from vectors (a benchmark's cached embeddings, or precomputed towers)
skips pass 1 and pass 2's re-read of images, but its labels must be the ones `pairsift run`
would give: the same fit step, score pass, noise fit and per-shard labelling, on the same
OUT/embeddings layout. This module writes that layout and runs exactly those stages.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pairsift.models.config import PairsiftConfig
from pairsift.models.noise.fit import NoiseFit
from pairsift.models.records import Status
from pairsift.models.storage.tables import write_rows
from pairsift.pipeline.layout import RunLayout

LABEL_COLUMNS = ("label", "p_clean", "soft_label", "uncertainty", "similarity", "loss")


@dataclass
class EmbeddedShard:
    """One shard of embedded pairs: keys (unique within the shard) and row-aligned vectors."""

    name: str
    keys: list[str]
    image: np.ndarray
    text: np.ndarray
    text_tgt: dict[str, np.ndarray] = field(default_factory=dict)
    text_ml: np.ndarray | None = None  # the English caption through the multilingual tower

    def rows(self) -> list[dict[str, Any]]:
        """The shard's rows as pass 1 writes them (ids, fingerprints, float16 vectors)."""
        out = []
        for i, key in enumerate(self.keys):
            row: dict[str, Any] = {
                "key": key, "source_shard": self.name, "index": i, "status": Status.OK.value,
                # one fingerprint per pair: embedded input carries no bytes to deduplicate by
                "sha256": hashlib.sha256(f"{self.name}/{key}".encode()).hexdigest(),
                "caption_sha256": hashlib.sha256(f"{self.name}/{key}/c".encode()).hexdigest(),
                "image_emb": self.image[i], "text_emb": self.text[i],
            }
            for lang, vectors in sorted(self.text_tgt.items()):
                row[f"text_emb_{lang}"] = vectors[i]
            if self.text_ml is not None:
                row["text_emb_ml"] = self.text_ml[i]
            out.append(row)
        return out


@dataclass
class EmbeddedLabels:
    """The shipped division of every pair, in shard then key order, with the fit behind it."""

    shard: list[str]
    key: list[str]
    columns: dict[str, np.ndarray]  # label, p_clean, soft_label, uncertainty, similarity, loss
    noise_fit: NoiseFit
    fit_info: dict[str, Any]

    @property
    def label(self) -> np.ndarray:
        return self.columns["label"]

    @property
    def p_clean(self) -> np.ndarray:
        return self.columns["p_clean"]

    @property
    def kept(self) -> np.ndarray:
        return self.label != "noisy"


def with_shard_languages(cfg: PairsiftConfig, shards: list[EmbeddedShard]) -> PairsiftConfig:
    """``cfg`` whose target languages are the ones the shards carry vectors for."""
    langs = sorted({lang for shard in shards for lang in shard.text_tgt})
    if langs == list(cfg.translate.target_langs):
        return cfg
    return dataclasses.replace(cfg, translate=dataclasses.replace(cfg.translate, target_langs=langs))


def write_embedded(shards: list[EmbeddedShard], layout: RunLayout) -> None:
    """OUT/embeddings/<shard>.parquet for each shard, in pass 1's format."""
    for shard in shards:
        if len(set(shard.keys)) != len(shard.keys):
            raise ValueError(f"shard {shard.name!r} repeats a key")
        write_rows(layout.embeddings_file(shard.name), shard.rows())


def label_embedded(
    shards: list[EmbeddedShard], cfg: PairsiftConfig, output: str, beam_args: list[str] | None = None
) -> EmbeddedLabels:
    """Fit, score, fit the noise model and label ``shards`` under ``output``, as `pairsift
    run` does after pass 1 (its stages, its RunLayout, its per-shard labelling). The target
    languages are the ones the shards carry vectors for."""
    from pairsift.pipeline.audit_columns import ShardLabels
    from pairsift.pipeline.audit_schema import audit_schema
    from pairsift.pipeline.embedding_run import write_part_audit
    from pairsift.pipeline.options import make_options
    from pairsift.pipeline.stages import STAGES, RunContext, run_stages
    from pairsift.pipeline.tally import run_tally

    layout = RunLayout(output.rstrip("/"))
    cfg = with_shard_languages(cfg, shards)
    write_embedded(shards, layout)
    ctx = RunContext(cfg, layout, make_options(beam_args or []), shards=[])
    run_stages(ctx, tuple(s for s in STAGES if s.name in ("dedup", "fit", "score", "mixture")))
    assert ctx.noise_fit is not None
    # the audit and the tally job's kept sample, as the label stage leaves them for the
    # final model
    schema = audit_schema([layout.embeddings_file(s.name) for s in shards],
                          [layout.scores_file(s.name) for s in shards], cfg.translate.target_langs)
    for shard in shards:
        write_part_audit(layout, cfg, ctx.noise_fit, schema, shard.name)
    run_tally(cfg, layout, ctx.options)
    names: list[str] = []
    keys: list[str] = []
    values: dict[str, list[Any]] = {c: [] for c in LABEL_COLUMNS}
    for shard in shards:
        labelled = ShardLabels.of(layout, shard.name, ctx.noise_fit, cfg)
        for key in shard.keys:
            names.append(shard.name)
            keys.append(key)
            row = labelled.scored(key) or {}
            for column in LABEL_COLUMNS:
                values[column].append(row.get(column))
    columns = {"label": np.asarray(values["label"], dtype=object).astype(str)}
    columns.update({c: np.asarray(values[c], dtype=np.float64) for c in LABEL_COLUMNS[1:]})
    return EmbeddedLabels(names, keys, columns, ctx.noise_fit, ctx.fit_info)
