"""Scoring stage pieces: per-pair scores from a frozen scoring state, and the loss histogram.

The histogram is a CombineGlobally of integer counts on a fixed, fine grid: the beta mixture
fits on it exactly up to binning, in O(bins) per EM step, for any number of pairs; integer
counts also make the merge order irrelevant, so the fit is deterministic on any runner.
"""

from __future__ import annotations

from typing import Any

import apache_beam as beam
import numpy as np

from pairsift.models.noise.histogram import histogram, histogram2d


class _CountsSum(beam.CombineFn):
    """Sums int64 histograms of a fixed shape; subclasses histogram one input."""

    shape: tuple[int, ...]

    def create_accumulator(self) -> np.ndarray:
        return np.zeros(self.shape, dtype=np.int64)

    def merge_accumulators(self, accumulators: Any) -> np.ndarray:
        total = self.create_accumulator()
        for acc in accumulators:
            total = total + acc
        return total

    def extract_output(self, acc: np.ndarray) -> np.ndarray:
        return acc


class LossHistogram(_CountsSum):
    """Sums fixed-range histograms of the per-pair loss."""

    def __init__(self, lo: float, hi: float, bins: int) -> None:
        self.lo, self.hi, self.bins = lo, hi, bins
        self.shape = (bins,)

    def add_input(self, acc: np.ndarray, losses: np.ndarray) -> np.ndarray:
        return acc + histogram(np.asarray(losses, dtype=np.float64), self.lo, self.hi, self.bins)


class JointHistogram(_CountsSum):
    """Sums joint histograms of the first two arrays of each element (one shard's pairs)."""

    def __init__(
        self, x_range: tuple[float, float], y_range: tuple[float, float], bins: tuple[int, int]
    ) -> None:
        self.x_range, self.y_range = tuple(x_range), tuple(y_range)
        self.shape = tuple(bins)

    def add_input(self, acc: np.ndarray, element: tuple[np.ndarray, ...]) -> np.ndarray:
        return acc + histogram2d(element[0], element[1], self.x_range, self.y_range, self.shape)


class UncertaintyHistogram(JointHistogram):
    """Sums joint (loss, u) histograms, u over [0, 1]: the global uncertainty threshold."""

    def __init__(self, lo: float, hi: float, bins: tuple[int, int]) -> None:
        super().__init__((lo, hi), (0.0, 1.0), bins)


def score_in_chunks(
    state: Any,
    matrices: dict[str, np.ndarray],
    langs: list[str],
    chunk: int = 4096,
    keys: list[str] | None = None,
) -> dict[str, np.ndarray]:
    """Score every row, ``chunk`` rows at a time (bounded memory; results are row-wise).

    With ``keys`` and a cross-fitted state, each row goes to the fold heads its key picks.
    """
    from pairsift.models.training.scoring import fold_of_keys, score_batch

    n = len(matrices["image_emb"])
    parts: list[dict[str, np.ndarray]] = []
    for start in range(0, n, chunk):
        window = slice(start, start + chunk)
        text_tgt = {
            lang: matrices[f"text_emb_{lang}"][window]
            for lang in langs
            if f"text_emb_{lang}" in matrices
        }
        ml = matrices.get("text_emb_ml")
        parts.append(
            score_batch(
                state,
                matrices["image_emb"][window],
                matrices["text_emb"][window],
                text_tgt or None,
                ml[window] if ml is not None and text_tgt else None,
                folds=(
                    fold_of_keys(keys[window], len(state.fold_heads))
                    if keys is not None and state.fold_heads
                    else None
                ),
            )
        )
    if not parts:
        return {}
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
