"""The driver's fused noise-share cut: one global value from the summed histograms."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pairsift.models.config import PairsiftConfig
from pairsift.models.noise.division import divide
from pairsift.models.noise.fit import NoiseFit, NoiseHistograms
from pairsift.models.storage.atomic import read_json, write_json
from pairsift.pipeline.layout import RunLayout
from pairsift.pipeline.score_pass import fit_noise
from pairsift.transforms.curate import label_scores


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
    """The score pass's output for ``n`` pairs: their summed histograms."""
    scores, null_loss, null_c = _scores(n, seed=3)
    hists = NoiseHistograms.of((0.0, 1.0), cfg, scores["loss"], scores["uncertainty"], null_loss,
                               scores["consistency"], null_c)
    write_json(layout.histograms, hists.to_dict())
    return scores


def test_every_shard_cuts_at_one_fused_posterior_that_keeps_the_clean_count(tmp_path: Path) -> None:
    cfg = PairsiftConfig()
    cfg.division.keep_rule = "noise_share"
    cfg.division.refurbish = cfg.division.fisher_soften = False
    layout = RunLayout(str(tmp_path))
    n = 4000
    scores = _write_histograms(layout, cfg, n)
    fit = fit_noise(cfg, layout)
    saved = read_json(layout.noise_fit)
    assert saved["mixture"]["consistency"] is not None
    assert saved["keep_posterior"] is not None and saved["keep_posterior"] == fit.keep_posterior
    state = NoiseFit.from_dict(saved)  # what every pass-2 worker loads
    shards = [slice(0, 1000), slice(1000, 2600), slice(2600, n)]
    labels = np.concatenate([
        label_scores({k: v[part] for k, v in scores.items()}, state)["label"] for part in shards
    ])
    whole = label_scores(scores, state)["label"]
    np.testing.assert_array_equal(labels, whole)  # no shard's own scores move the cut
    kept = labels != "noisy"
    clean_count = (1 - state.mixture.noise_ratio) * n
    assert abs(kept.sum() - clean_count) < 0.02 * n  # exact up to the histogram's binning
    # and it agrees with the exact in-memory cut on all but the pairs near it
    in_memory = divide(scores, state.mixture, cfg.division).kept
    assert (in_memory == kept).mean() > 0.98
    # without the anchors' consistency the posterior is the loss's alone, cut by the loss
    hists = NoiseHistograms.from_dict(read_json(layout.histograms))
    hists.consistency[:] = 0
    write_json(layout.histograms, hists.to_dict())
    loss_only = fit_noise(cfg, layout)
    assert loss_only.mixture.consistency is None and loss_only.keep_posterior is None
