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


DROPPED_WARN_SHARE = 0.8  # a run that drops more of its labelled pairs than this says so


def outcome_warnings(by_label: dict[str, int], encoder_spec: str) -> list[str]:
    """What a user must hear about the outcome: towers without pretrained weights, or a run
    that dropped nearly everything (whatever the null read)."""
    from pairsift.models.encoders.factory import random_init_towers

    out = []
    towers = random_init_towers(encoder_spec)
    if towers:
        out.append(f"the encoder {encoder_spec!r} has no pretrained weights for its "
                   f"{' and '.join(towers)} tower{'s' if len(towers) > 1 else ''} (random init): "
                   "its labels only exercise the code. Name pretrained weights with --encoder "
                   "(e.g. open_clip:NAME/TAG) for labels that mean anything.")
    labelled = sum(by_label.values())
    dropped = by_label.get("noisy", 0)
    if labelled >= 20 and dropped / labelled > DROPPED_WARN_SHARE:
        out.append(f"{dropped:,} of {labelled:,} labelled pairs ({dropped / labelled:.0%}) were "
                   "dropped as noisy: check the most confidently noisy pairs in report.html "
                   "before trusting the shards; an unsuitable encoder does this.")
    return out


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
        "warnings": fit_warnings(mixture) + outcome_warnings(
            by_label, str((config.get("encoder") or {}).get("spec", "default"))),
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
