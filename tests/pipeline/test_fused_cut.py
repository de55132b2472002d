"""The driver's fused noise-share cut: one global value from the summed histograms."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pairsift.models.config import PairsiftConfig
from pairsift.models.noise.consistency import CONSISTENCY_RANGE
from pairsift.models.noise.division import divide
from pairsift.models.noise.histogram import histogram, histogram2d
from pairsift.models.storage.atomic import read_json, write_json
from pairsift.pipeline.layout import RunLayout
from pairsift.pipeline.score_pass import (
    CONSISTENCY_HISTOGRAM_FILE,
    DIVISION_FILE,
    HISTOGRAM_FILE,
    JOINT_CONSISTENCY_FILE,
    MIXTURE_FILE,
    NULL_CONSISTENCY_HISTOGRAM_FILE,
    NULL_HISTOGRAM_FILE,
    UNCERTAINTY_BINS,
    UNCERTAINTY_HISTOGRAM_FILE,
    fit_mixture,
)
from pairsift.transforms.curate import FitState, label_scores


def _scores(n: int, seed: int) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Overlapping losses and consistencies of half noisy pairs, and the swapped pairs' nulls."""
    rng = np.random.default_rng(seed)
    noisy = np.arange(n) < n // 2
    scores = {
        "loss": np.where(noisy, rng.beta(12, 5, n), rng.beta(7, 6, n)),
        "consistency": np.where(noisy, rng.normal(0.0, 0.1, n), rng.normal(0.2, 0.1, n)),
        "uncertainty": rng.random(n),
        "top": np.ones(n),
        "belief": rng.random(n),
    }
    return scores, rng.beta(12, 5, n), rng.normal(0.0, 0.1, n)


def _write_histograms(layout: RunLayout, cfg: PairsiftConfig, n: int) -> dict[str, np.ndarray]:
    scores, null_loss, null_c = _scores(n, seed=3)
    bins, c_bins = cfg.mixture.bins, cfg.consistency.bins

    def save(name: str, counts: np.ndarray, lo: float = 0.0, hi: float = 1.0) -> None:
        write_json(layout.fit_file(name), {"lo": lo, "hi": hi, "counts": counts.tolist()})

    loss, c = scores["loss"], scores["consistency"]
    save(HISTOGRAM_FILE, histogram(loss, 0.0, 1.0, bins))
    save(NULL_HISTOGRAM_FILE, histogram(null_loss, 0.0, 1.0, bins))
    save(UNCERTAINTY_HISTOGRAM_FILE,
         histogram2d(loss, scores["uncertainty"], (0.0, 1.0), (0.0, 1.0), UNCERTAINTY_BINS))
    save(CONSISTENCY_HISTOGRAM_FILE, histogram(c, *CONSISTENCY_RANGE, c_bins), *CONSISTENCY_RANGE)
    save(NULL_CONSISTENCY_HISTOGRAM_FILE, histogram(null_c, *CONSISTENCY_RANGE, c_bins),
         *CONSISTENCY_RANGE)
    save(JOINT_CONSISTENCY_FILE,
         histogram2d(loss, c, (0.0, 1.0), CONSISTENCY_RANGE, (UNCERTAINTY_BINS[0], c_bins)))
    return scores


def test_every_shard_cuts_at_one_fused_posterior_that_keeps_the_clean_count(tmp_path: Path) -> None:
    cfg = PairsiftConfig()
    cfg.division.keep_rule = "noise_share"
    cfg.division.refurbish = cfg.division.fisher_soften = False
    layout = RunLayout(str(tmp_path))
    n = 4000
    scores = _write_histograms(layout, cfg, n)
    params = fit_mixture(cfg, layout)
    assert read_json(layout.fit_file(MIXTURE_FILE))["consistency"] is not None
    keep = read_json(layout.fit_file(DIVISION_FILE))["keep_posterior"]
    assert keep is not None and keep == params["keep_posterior"]
    state = FitState.from_params(read_json(layout.fit_file(MIXTURE_FILE)),
                                 read_json(layout.fit_file(DIVISION_FILE)))
    shards = [slice(0, 1000), slice(1000, 2600), slice(2600, n)]
    labels = np.concatenate([
        label_scores({k: v[part] for k, v in scores.items()}, state, cfg)["label"]
        for part in shards
    ])
    whole = label_scores(scores, state, cfg)["label"]
    np.testing.assert_array_equal(labels, whole)  # no shard's own scores move the cut
    kept = labels != "noisy"
    clean_count = (1 - state.mixture.noise_ratio) * n
    assert abs(kept.sum() - clean_count) < 0.02 * n  # exact up to the histogram's binning
    # and it agrees with the exact in-memory cut on all but the pairs near it
    in_memory = divide(scores, state.mixture, cfg.division).kept
    assert (in_memory == kept).mean() > 0.98
    # without the anchors' histograms the posterior is the loss's alone, cut by the loss
    Path(layout.fit_file(CONSISTENCY_HISTOGRAM_FILE)).unlink()
    loss_only = fit_mixture(cfg, layout)
    assert loss_only["consistency"] is None and loss_only["keep_posterior"] is None
