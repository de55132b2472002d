"""OUT/summary.json from the tally job's counts (pipeline/tally.py): pairs
by status and label, the noise ratio, detection quality."""

from __future__ import annotations

import importlib.metadata
from typing import Any

from pairsift.models.config import MixtureConfig
from pairsift.models.noise.fit import NoiseFit
from pairsift.pipeline.tally import Tally

VERSIONED = ("pairsift", "torch", "apache-beam", "open_clip_torch", "transformers", "pyarrow")


def versions() -> dict[str, str]:
    found = {}
    for name in VERSIONED:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


NULL_WARN_RATIO = MixtureConfig.null_max_ratio  # where the posterior leaves the null, warn


def fit_warnings(mixture: dict[str, Any]) -> list[str]:
    """What a user must hear about the fit: a null that calls (nearly) every pair noise."""
    null = mixture.get("null") or {}
    ratio = null.get("noise_ratio")
    if ratio is None or ratio < NULL_WARN_RATIO:
        return []
    return [
        f"the empirical null reads a noise share of {ratio:.2f}: the heads barely tell a pair "
        "from one given another pair's caption, so few or no pairs are kept. A random-init or "
        "unsuitable encoder does this (--encoder); so does input that really is almost all noise."
    ]


def fit_summary(fit: NoiseFit) -> dict[str, Any]:
    """The noise fit as summary.json reports it: the mixture's parameters and the cuts."""
    params = {} if fit.mixture is None else fit.mixture.to_dict()
    return params | {"uncertainty_threshold": fit.uncertainty_threshold,
                     "keep_posterior": fit.keep_posterior}


def build_summary(
    tally: Tally,
    *,
    input_pairs_expected: int | None,
    mixture: dict[str, Any],
    fit_info: dict[str, Any],
    timings: dict[str, float],
    counters: dict[str, int],
    config: dict[str, Any],
    keep_labels: list[str],
) -> dict[str, Any]:
    by_status = dict(sorted(tally.by_status.items()))
    by_label = dict(sorted(tally.by_label.items()))
    labelled = sum(by_label.values())
    kept = tally.kept(keep_labels)
    summary: dict[str, Any] = {
        "pairs": {
            "input": tally.pairs,
            "by_status": by_status,
            "by_label": by_label,
            "kept": int(kept),
            "labelled_noisy_ratio": (by_label.get("noisy", 0) / labelled) if labelled else None,
        },
        "estimated_noise_ratio": mixture.get("noise_ratio"),
        "warnings": fit_warnings(mixture),
        "detection": tally.detection(),
        "mixture": mixture,
        "fit": {k: v for k, v in fit_info.items() if k != "history"},
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "beam_counters": dict(sorted(counters.items())),
        "versions": versions(),
        "config": config,
    }
    if input_pairs_expected is not None:
        summary["pairs"]["expected_input"] = input_pairs_expected
    if tally.by_language:
        summary["pairs"]["translations_by_label"] = tally.language_labels()
    return summary
