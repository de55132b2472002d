"""Two-component Gaussian mixture by EM on a weighted histogram (NCR's division model).

The beta mixture's fallback: where clean and noisy losses overlap into a single hump, the beta
fit can settle on a flat or U-shaped "component" that explains the tails, and its noise
estimate goes wild; two Gaussians with a variance floor (as NCR's GMM) stay balanced there.
Same inputs as the beta fit (normalised bin centres and counts), so it scales the same way.
"""

from __future__ import annotations

import numpy as np

from pairsift.models.noise.beta_em import logsumexp

_LOG_2PI = float(np.log(2.0 * np.pi))


def gaussian_log_pdf(x: np.ndarray, means: np.ndarray, stds: np.ndarray) -> np.ndarray:
    """[n, k] normal log densities."""
    z = (np.asarray(x, dtype=np.float64)[:, None] - means[None, :]) / stds[None, :]
    return -0.5 * z * z - np.log(stds)[None, :] - 0.5 * _LOG_2PI


def fit_gaussian_histogram(
    x: np.ndarray, w: np.ndarray, reg: float = 5e-4, max_iter: int = 200, tol: float = 1e-6
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """EM from a split at the weighted median; returns (means, stds, weights, log-likelihood),
    sorted by mean. ``reg`` is added to each variance (sklearn's ``reg_covar``)."""
    x, w = np.asarray(x, dtype=np.float64), np.asarray(w, dtype=np.float64)
    cdf = np.cumsum(w) / w.sum()
    low = np.arange(x.size) <= np.searchsorted(cdf, 0.5)
    resp = np.stack([low, ~low], axis=1).astype(np.float64)
    ll, prev = -np.inf, -np.inf
    means = stds = weights = np.zeros(2)
    for _ in range(max_iter):
        mass = (w[:, None] * resp).sum(axis=0) + 1e-12
        means = (w[:, None] * resp * x[:, None]).sum(axis=0) / mass
        var = (w[:, None] * resp * (x[:, None] - means[None, :]) ** 2).sum(axis=0) / mass
        stds = np.sqrt(var + reg)
        weights = mass / mass.sum()
        joint = gaussian_log_pdf(x, means, stds) + np.log(weights)[None, :]
        norm = logsumexp(joint, axis=1)
        ll = float((w * norm).sum())
        resp = np.exp(joint - norm[:, None])
        if abs(ll - prev) <= tol * max(1.0, abs(ll)):
            break
        prev = ll
    order = np.argsort(means, kind="stable")
    return means[order], stds[order], weights[order], ll
