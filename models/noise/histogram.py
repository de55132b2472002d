"""Fixed-range histograms: what workers sum (a CombineGlobally of int64 counts) and every
noise fit reads, so a fit is exact up to binning and costs O(bins) whatever the pair count."""

from __future__ import annotations

import numpy as np


def _bin_index(values: np.ndarray, lo: float, hi: float, bins: int) -> np.ndarray:
    """Bin of each value among ``bins`` equal bins of [lo, hi]; outliers go to the edge bins."""
    idx = np.floor((values - lo) / (hi - lo) * bins)
    return np.clip(idx, 0, bins - 1).astype(np.int64)


def histogram(values: np.ndarray, lo: float, hi: float, bins: int) -> np.ndarray:
    """int64 counts of ``values`` over ``bins`` equal bins of [lo, hi]; outliers go to edges."""
    if not hi > lo:
        raise ValueError(f"histogram range must have hi > lo, got [{lo}, {hi}]")
    if bins < 2:
        raise ValueError(f"histogram needs at least 2 bins, got {bins}")
    arr = np.asarray(values, dtype=np.float64).ravel()
    if not np.all(np.isfinite(arr)):
        raise ValueError("histogram values contain NaN or inf; audit those pairs first")
    return np.bincount(_bin_index(arr, lo, hi, bins), minlength=bins).astype(np.int64)


def histogram2d(
    xs: np.ndarray, ys: np.ndarray, x_range: tuple[float, float], y_range: tuple[float, float],
    bins: tuple[int, int],
) -> np.ndarray:
    """int64 [x_bins, y_bins] joint counts, binned like :func:`histogram` on each axis."""
    (x_lo, x_hi), (y_lo, y_hi) = x_range, y_range
    if not (x_hi > x_lo and y_hi > y_lo):
        raise ValueError(f"histogram ranges must have hi > lo, got {x_range}, {y_range}")
    x = np.asarray(xs, dtype=np.float64).ravel()
    y = np.asarray(ys, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"xs and ys differ in length: {x.shape} vs {y.shape}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("histogram values contain NaN or inf; audit those pairs first")
    nx, ny = bins
    flat = _bin_index(x, x_lo, x_hi, nx) * ny + _bin_index(y, y_lo, y_hi, ny)
    return np.bincount(flat, minlength=nx * ny).astype(np.int64).reshape(nx, ny)


def bin_centres(lo: float, hi: float, bins: int) -> np.ndarray:
    """Centres of the bins :func:`histogram` counts into."""
    width = (hi - lo) / bins
    return lo + (np.arange(bins) + 0.5) * width
