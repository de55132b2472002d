"""Pass-2 labelling: every shard divides with the same fitted global state."""

from __future__ import annotations

import json

import numpy as np
import torch

from pairsift.models.config import MixtureConfig, PairsiftConfig
from pairsift.models.noise.division import divide, relative_threshold
from pairsift.models.noise.evidential import opinion
from pairsift.models.noise.fit import NoiseFit
from pairsift.models.noise.histogram import histogram
from pairsift.models.noise.mixture import BetaMixture
from pairsift.transforms.curate import label_scores


def _scores(n: int, seed: int) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Half noise, tuxpaint-shaped overlapping losses (see tests/models/noise/test_null_model.py)."""
    rng = np.random.default_rng(seed)
    noisy = np.arange(n) < n // 2
    loss = np.where(noisy, rng.beta(12, 4.7, n), np.clip(0.82 - rng.gamma(2.0, 0.1, n), 0, 1))
    sims = np.concatenate([rng.uniform(-0.2, 0.3, (n, 1)), rng.normal(-0.35, 0.05, (n, 16))], 1)
    op = opinion(torch.from_numpy(sims), 0.1)
    neg = op.belief[:, 1:].amax(1)
    scores = {
        "loss": loss, "similarity": sims[:, 0], "belief": op.belief[:, 0].numpy(),
        "uncertainty": op.uncertainty.numpy(), "alpha_self": op.alpha[:, 0].numpy(),
        "alpha_total": op.strength.numpy(), "match_prob": op.expected[:, 0].numpy(),
        "belief_neg_max": neg.numpy(), "top": (op.belief[:, 0] >= neg).double().numpy(),
    }
    return scores, noisy, rng.beta(12, 4.7, n)


def test_shards_keep_nothing_beyond_the_global_null_count() -> None:
    cfg = PairsiftConfig()
    scores, _, null = _scores(3000, seed=0)
    mcfg = MixtureConfig()
    mixture = BetaMixture.fit_histogram(
        histogram(scores["loss"], 0, 1, mcfg.bins), 0.0, 1.0, mcfg, histogram(null, 0, 1, mcfg.bins)
    )
    thr = relative_threshold(scores["uncertainty"], mixture.posterior_clean(scores["loss"]), cfg.division)
    # the state as pass 2 reads it: the mixture (with its null) through JSON
    fit = NoiseFit(cfg.division, mixture, uncertainty_threshold=thr)
    state = NoiseFit.from_dict(json.loads(json.dumps(fit.to_dict())))
    cut = state.mixture.keep_loss()
    assert cut is not None and abs(cut - mixture.keep_loss()) < 1e-9
    shards = np.array_split(np.arange(3000), 7)
    labels = np.concatenate([
        label_scores({k: v[rows] for k, v in scores.items()}, state)["label"] for rows in shards
    ])
    whole = divide(scores, mixture, cfg.division, uncertainty_threshold=thr)
    np.testing.assert_array_equal(labels, whole.label)  # shard by shard = all at once
    kept = labels != "noisy"
    assert scores["loss"][kept].max() <= cut < scores["loss"].max()
    assert abs(kept.mean() - (1.0 - mixture.noise_ratio)) < 0.1
