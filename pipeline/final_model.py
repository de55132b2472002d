"""The final retrieval model: heads trained on the curated pairs alone.

The fit step's heads learn while the division is still being found, from every pair, noisy
ones down-weighted; heads trained afresh on the pairs pass 2 kept never see the dropped ones
(measured by `pairsift bench quality`'s "(d) pairsift OUT/model" row). When the division
keeps fewer than ``train.final_min_pairs`` pairs the fit heads stay: a small-data guard, not
a tuned optimum. ``train.final_loss = "none"`` always keeps the fit heads. Each kept pair's
loss is weighted by its clean posterior to the power ``train.final_weight_power``
(:func:`kept_weights`). docs/noise_modelling.md, "The final model", has the measurements.
"""

from __future__ import annotations

import copy
import logging

import numpy as np
import polars as pl

from pairsift.models.config import PairsiftConfig
from pairsift.models.storage.atomic import exists, read_json, write_json
from pairsift.pipeline.fit import load_fit_pairs, load_ids, save_model
from pairsift.pipeline.layout import RunLayout

log = logging.getLogger(__name__)

FINAL_LOSSES = ("contrastive", "rcl", "decl", "none")


def kept_rows(ids_shards: list[str], ids_keys: list[str], audit: pl.DataFrame,
              keep_labels: list[str]) -> np.ndarray:
    """Rows of the id table whose pair pass 2 kept (label in ``keep_labels``)."""
    if audit.is_empty():
        return np.zeros(0, dtype=np.int64)
    kept = audit.filter(pl.col("label").is_in(keep_labels))
    wanted = set(zip(kept["source_shard"].to_list(), kept["key"].to_list(), strict=True))
    pairs = zip(ids_shards, ids_keys, strict=True)
    return np.asarray([i for i, pair in enumerate(pairs) if pair in wanted], dtype=np.int64)


def kept_weights(ids, audit: pl.DataFrame, power: float) -> np.ndarray | None:
    """p_clean**power of each pair of ``ids`` (from its audit row); None for power 0.

    Part of what the division keeps is still noise, most of it among the lowest posteriors;
    weighing each pair by its posterior lets the final model lean on the surer pairs without
    dropping the rest (docs/noise_modelling.md, the final model).
    """
    if power == 0:
        return None
    p_clean = {
        (shard, key): p
        for shard, key, p in zip(audit["source_shard"].to_list(), audit["key"].to_list(),
                                 audit["p_clean"].to_list(), strict=True)
    }
    wanted = zip(ids.column("source_shard").to_pylist(), ids.column("key").to_pylist(), strict=True)
    return posterior_weights(np.asarray([p_clean.get(pair) for pair in wanted], dtype=np.float64),
                             power)


def posterior_weights(p_clean: np.ndarray, power: float) -> np.ndarray | None:
    """The final model's weight of each kept pair, p_clean**power (a missing posterior counts
    as 1); None for power 0, unweighted. The pipeline and the benchmark both use this rule."""
    if power < 0:
        raise ValueError(f"train.final_weight_power must be >= 0, got {power}")
    if power == 0:
        return None
    return np.nan_to_num(np.clip(np.asarray(p_clean, dtype=np.float64), 0.0, 1.0), nan=1.0) ** power


def retrains(kept_pairs: int, cfg: PairsiftConfig) -> bool:
    """Whether OUT/model is retrained on ``kept_pairs`` pairs (else the fit heads stay)."""
    return cfg.train.final_loss != "none" and kept_pairs >= max(cfg.train.final_min_pairs, 2)


def run_final_model(cfg: PairsiftConfig, layout: RunLayout, audit: pl.DataFrame) -> dict:
    """Train ``OUT/model`` on the kept pairs. Skipped when its completion marker exists."""
    from pairsift.models.encoders.base import set_torch_threads
    from pairsift.models.training.trainer import train

    set_torch_threads(cfg.encoder.threads)
    loss = cfg.train.final_loss
    if loss not in FINAL_LOSSES:
        raise ValueError(f"unknown train.final_loss {loss!r}; choose from {FINAL_LOSSES}")
    if loss == "none":
        return {"trained_on": "fit"}
    done_path = layout.final_done
    if exists(done_path):
        log.info("final model: already trained, skipping")
        return read_json(done_path)
    ids = load_ids(layout)
    keys = ids.column("key").to_pylist()
    rows = kept_rows(ids.column("source_shard").to_pylist(), keys, audit,
                     list(cfg.output.keep_labels))
    if not retrains(rows.size, cfg):
        reason = (f"{rows.size} of {len(keys)} pairs kept, under train.final_min_pairs "
                  f"{cfg.train.final_min_pairs}")
        log.warning("final model: %s; OUT/model keeps the fit heads", reason)
        return {"trained_on": "fit", "reason": reason}
    pairs = load_fit_pairs(ids, rows, cfg)
    rows, data, aligned = pairs.rows, pairs.data, pairs.identity_init
    final_cfg = copy.deepcopy(cfg)
    final_cfg.train.loss, final_cfg.train.co_teaching = loss, False
    weights = kept_weights(ids.take(rows), audit, cfg.train.final_weight_power)
    log.info("final model: training %s heads on %d kept pairs (weights p_clean^%g)",
             loss, len(rows), cfg.train.final_weight_power)
    result = train(data, final_cfg, identity_init=aligned, weights=weights,
                   progress=lambda e: log.info("final model: %s", e))
    info = {"trained_on": "kept", "loss": loss, "pairs": int(len(rows)),
            "train_loss": result.history[-1]["train_loss"] if result.history else None}
    save_model(layout.model, result.heads, final_cfg, sorted(data.text_tgt),
               {"pairs": int(len(rows)), "curated_by": cfg.division.method})
    write_json(done_path, info)
    return info
