"""Paired comparison of pairsift against the best fair baseline, seed by seed.

Each seed of a setting draws one noise plan that every method sees, so the per-seed
difference pairsift − baseline removes the plan's own luck; its mean with a Student-t 95 %
interval over seeds is what the tables report (an interval that excludes 0 is a difference
these seeds support). The "best" baseline is the one of highest mean on that figure.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

FAIR_BASELINES = ("all", "clip_score", "gmm", "ncr", "decl")


@dataclass
class PairedDifference:
    baseline: str
    mean: float
    low: float
    high: float
    seeds: int

    def text(self, digits: int = 3) -> str:
        verdict = "excludes 0" if self.low > 0 or self.high < 0 else "includes 0"
        return (f"{self.mean:+.{digits}f} (95 % CI {self.low:+.{digits}f} … {self.high:+.{digits}f}, "
                f"{self.seeds} seeds; {verdict}) against {self.baseline}")


def paired_difference(ours: dict[int, float], theirs: dict[int, float], baseline: str,
                      confidence: float = 0.95) -> PairedDifference | None:
    """Mean of ours − theirs over the seeds both have, with a t interval; None under 2 seeds."""
    seeds = sorted(set(ours) & set(theirs))
    if len(seeds) < 2:
        return None
    diff = np.asarray([ours[s] - theirs[s] for s in seeds], dtype=np.float64)
    half = stats.t.ppf(0.5 + confidence / 2, len(diff) - 1) * diff.std(ddof=1) / np.sqrt(len(diff))
    return PairedDifference(baseline, float(diff.mean()), float(diff.mean() - half),
                            float(diff.mean() + half), len(seeds))


def against_best(per_method: dict[str, dict[int, float]], method: str = "pairsift") -> PairedDifference | None:
    """``method`` against the fair baseline of highest mean (per seed: {seed: value})."""
    candidates = {b: v for b, v in per_method.items() if b in FAIR_BASELINES and v}
    if method not in per_method or not candidates:
        return None
    best = max(candidates, key=lambda b: float(np.mean(list(candidates[b].values()))))
    return paired_difference(per_method[method], candidates[best], best)
