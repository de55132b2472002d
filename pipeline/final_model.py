"""The final retrieval model: heads trained on the curated pairs alone.

The fit step's heads learn while the division is still being found, from every pair, noisy
ones down-weighted; heads trained afresh on the pairs pass 2 kept never see the dropped ones
(measured by `pairsift bench quality`'s "(d) pairsift OUT/model" row). When the division
keeps fewer than ``train.final_min_pairs`` pairs the fit heads stay: a small-data guard, not
a tuned optimum. ``train.final_loss = "none"`` always keeps the fit heads. Each kept pair's
loss is weighted by its clean posterior to the power ``train.final_weight_power``
(:func:`posterior_weights`). docs/noise_modelling.md, "The final model", has the measurements.
"""

from __future__ import annotations

import copy
import logging
from functools import partial

import numpy as np

from pairsift.models.config import PairsiftConfig
from pairsift.models.storage.atomic import exists, read_json, write_json
from pairsift.models.storage.tables import read_table
from pairsift.pipeline.fit import load_pairs, save_model
from pairsift.pipeline.layout import RunLayout
from pairsift.pipeline.progress import StageProgress

log = logging.getLogger(__name__)

FINAL_LOSSES = ("contrastive", "rcl", "decl", "none")


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


def run_final_model(cfg: PairsiftConfig, layout: RunLayout, kept_pairs: int) -> dict:
    """Train ``OUT/model`` on the tally job's kept sample (``kept_pairs``: how many pairs
    pass 2 kept in all). Skipped when its completion marker exists."""
    from pairsift.models.threads import set_torch_threads
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
    if not retrains(kept_pairs, cfg):
        embedded = read_json(layout.dedup_done)["embedded_pairs"]
        reason = (f"{kept_pairs} of {embedded} pairs kept, under train.final_min_pairs "
                  f"{cfg.train.final_min_pairs}")
        log.warning("final model: %s; OUT/model keeps the fit heads", reason)
        return {"trained_on": "fit", "reason": reason}
    sample = read_table(layout.final_sample)
    pairs = load_pairs(layout, sample, cfg)
    data, aligned = pairs.data, pairs.identity_init
    final_cfg = copy.deepcopy(cfg)
    final_cfg.train.loss, final_cfg.train.co_teaching = loss, False
    p_clean = np.asarray(sample.column("p_clean").to_numpy(zero_copy_only=False), dtype=np.float64)
    weights = posterior_weights(p_clean, cfg.train.final_weight_power)
    log.info("final model: training %s heads on %d kept pairs (weights p_clean^%g)",
             loss, len(data), cfg.train.final_weight_power)
    with StageProgress("final model", total=final_cfg.train.epochs, unit="epochs") as epochs:
        result = train(data, final_cfg, identity_init=aligned, weights=weights,
                       progress=partial(_log_epoch, epochs))
    info = {"trained_on": "kept", "loss": loss, "pairs": int(len(data)),
            "train_loss": result.history[-1]["train_loss"] if result.history else None}
    save_model(layout.model, result.heads, final_cfg, sorted(data.text_tgt),
               {"pairs": int(len(data)), "curated_by": cfg.division.method})
    write_json(done_path, info)
    return info


def _log_epoch(epochs: StageProgress, entry: dict) -> None:
    log.info("final model: %s", entry)
    epochs.advance()
