"""EM internals of the two-component beta mixture (weighted moments and MLE M-steps).

Split from :mod:`pairsift.models.noise.mixture`, which holds the fitted model and its queries.
Every routine works on histogram bin centres ``x`` (normalised losses) weighted by counts ``w``.
"""

from __future__ import annotations

import numpy as np
from scipy.special import betaln, digamma, polygamma

from pairsift.models.config import MixtureConfig

_MIN_PARAM = 1e-2


def beta_log_pdf(x: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[n, k] beta log densities."""
    lx, l1x = np.log(x)[:, None], np.log1p(-x)[:, None]
    return (a - 1)[None, :] * lx + (b - 1)[None, :] * l1x - betaln(a, b)[None, :]


def logsumexp(a: np.ndarray, axis: int) -> np.ndarray:
    """Row-wise log-sum-exp (a lean version for the [n, 2] arrays of the EM loop)."""
    top = np.max(a, axis=axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    return np.squeeze(top, axis=axis) + np.log(np.sum(np.exp(a - top), axis=axis))


def _min_variance(x: np.ndarray) -> float:
    """No component narrower than one bin (std ≥ the bin width in normalised units).

    Without it a component can collapse onto one well-filled bin — unbounded likelihood, a
    useless spike — which happens when most losses sit in the first few bins.
    """
    return (1.0 / max(x.size - 1, 1)) ** 2


def _cap(a: float, b: float, min_var: float) -> tuple[float, float]:
    """Shrink a + b (keeping the mean) until the beta variance is at least ``min_var``."""
    total = a + b
    m = a / total
    limit = max(m * (1 - m) / min_var - 1.0, 2.0)
    if total <= limit:
        return a, b
    return max(m * limit, _MIN_PARAM), max((1 - m) * limit, _MIN_PARAM)


def moment_fit(x: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    """Weighted method of moments → (α, β); variance clamped so both stay positive."""
    total = w.sum()
    if total <= 0:
        return 1.0, 1.0
    m = float((w * x).sum() / total)
    v = float((w * (x - m) ** 2).sum() / total)
    m = min(max(m, 1e-4), 1 - 1e-4)
    v = min(max(v, 1e-8), m * (1 - m) * 0.999)
    common = m * (1 - m) / v - 1
    return max(m * common, _MIN_PARAM), max((1 - m) * common, _MIN_PARAM)


def mle_fit(x: np.ndarray, w: np.ndarray, a: float, b: float) -> tuple[float, float]:
    """Weighted beta MLE by Newton on ψ(a) − ψ(a+b) = E[log x], ψ(b) − ψ(a+b) = E[log(1−x)]."""
    total = w.sum()
    if total <= 0:
        return a, b
    l1 = float((w * np.log(x)).sum() / total)
    l2 = float((w * np.log1p(-x)).sum() / total)
    for _ in range(30):
        grad = np.array([digamma(a) - digamma(a + b) - l1, digamma(b) - digamma(a + b) - l2])
        t = polygamma(1, a + b)
        hess = np.array([[polygamma(1, a) - t, -t], [-t, polygamma(1, b) - t]])
        try:
            step = np.linalg.solve(hess, grad)
        except np.linalg.LinAlgError:
            break
        while a - step[0] <= 0 or b - step[1] <= 0:  # stay in the parameter space
            step = step / 2
        a, b = max(a - step[0], _MIN_PARAM), max(b - step[1], _MIN_PARAM)
        if np.abs(step).max() < 1e-8:
            break
    return a, b


def run_em(
    x: np.ndarray,
    w: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    pi: np.ndarray,
    cfg: MixtureConfig,
    mle: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, int]:
    """EM on weighted points; returns params, weights, log-likelihood and iterations.

    The M-step is the weighted method of moments, or (``mle``) weighted maximum likelihood
    started from the moments estimate.
    """
    a, b, pi = a.astype(np.float64), b.astype(np.float64), pi.astype(np.float64)
    min_var = _min_variance(x)
    prev = -np.inf
    ll = -np.inf
    it = 0
    for it in range(1, cfg.max_iter + 1):  # noqa: B007 (returned below)
        joint = beta_log_pdf(x, a, b) + np.log(np.maximum(pi, 1e-300))[None, :]
        norm = logsumexp(joint, axis=1)
        ll = float((w * norm).sum())
        resp = np.exp(joint - norm[:, None])
        for k in range(len(a)):
            if mle:  # warm start from the previous estimate: a few Newton steps suffice
                a[k], b[k] = mle_fit(x, w * resp[:, k], a[k], b[k])
            else:
                a[k], b[k] = moment_fit(x, w * resp[:, k])
            a[k], b[k] = _cap(a[k], b[k], min_var)
        pi = (w[:, None] * resp).sum(axis=0)
        pi = np.maximum(pi / pi.sum(), 1e-8)
        pi /= pi.sum()
        if abs(ll - prev) <= cfg.tol * max(1.0, abs(ll)):
            break
        prev = ll
    return a, b, pi, ll, it


def initial_guesses(x: np.ndarray, w: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """RCAR's start (α=[1,2], β=[2,1]) and a split at the weighted median.

    The fixed start alone has a degenerate fixed point: two components Beta(a, a+1) and
    Beta(a+1, a) keep the same linear responsibility ramp for every a, so on (near-)symmetric
    data EM never leaves it. The median split starts from the two halves' moments; the fit with
    the higher likelihood wins.
    """
    starts = [(np.array([1.0, 2.0]), np.array([2.0, 1.0]), np.array([0.5, 0.5]))]
    cdf = np.cumsum(w) / w.sum()
    cut = int(np.searchsorted(cdf, 0.5)) + 1
    if 0 < cut < x.size:
        lo, hi = moment_fit(x[:cut], w[:cut]), moment_fit(x[cut:], w[cut:])
        share = float(cdf[cut - 1])
        starts.append(
            (np.array([lo[0], hi[0]]), np.array([lo[1], hi[1]]), np.array([share, 1.0 - share]))
        )
    return starts


def degenerate_reason(a: np.ndarray, b: np.ndarray, pi: np.ndarray, cfg: MixtureConfig) -> str | None:
    """Why a clean/noisy beta fit does not describe two populations (None if it does)."""
    names = ("clean", "noisy")
    for k in range(len(a)):
        if pi[k] < cfg.min_component_weight:
            return f"{names[k]} component weight {pi[k]:.3f} < {cfg.min_component_weight}"
        if a[k] < cfg.flat_shape and b[k] < cfg.flat_shape:
            return f"{names[k]} component flat or U-shaped (alpha {a[k]:.2f}, beta {b[k]:.2f})"
    return None


def sort_by_mean(a: np.ndarray, b: np.ndarray, pi: np.ndarray) -> tuple[np.ndarray, ...]:
    order = np.argsort(a / (a + b), kind="stable")
    return a[order], b[order], pi[order]
