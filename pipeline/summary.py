"""OUT/summary.json and OUT/report.html from the tally job's counts (pipeline/tally.py): pairs
by status and label, the noise ratio, detection quality."""

from __future__ import annotations

import html
import importlib.metadata
from typing import Any

import numpy as np

from pairsift.models.config import MixtureConfig
from pairsift.models.noise.fit import NoiseFit
from pairsift.models.storage.atomic import atomic_open
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


def _histogram_svg(counts: list[int], width: int = 600, height: int = 160) -> str:
    if not counts or max(counts) == 0:
        return ""
    bins = np.asarray(counts, dtype=float)
    nonzero = np.flatnonzero(bins)
    bins = bins[nonzero[0] : nonzero[-1] + 1]
    groups = max(1, len(bins) // 100)
    usable = len(bins) - len(bins) % groups
    coarse = bins[:usable].reshape(-1, groups).sum(axis=1) if usable else bins
    bar_w = width / len(coarse)
    top = coarse.max()
    bars = "".join(
        f'<rect x="{i * bar_w:.1f}" y="{height - h:.1f}" width="{bar_w:.1f}" height="{h:.1f}" fill="#4a7bd0"/>'
        for i, h in enumerate(coarse / top * height)
    )
    return f'<svg width="{width}" height="{height}" role="img" aria-label="loss histogram">{bars}</svg>'


def write_report(path: str, summary: dict[str, Any], histogram: list[int]) -> None:
    def table(title: str, data: dict[str, Any]) -> str:
        rows = "".join(
            f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(str(v))}</td></tr>" for k, v in data.items()
        )
        return f"<h2>{html.escape(title)}</h2><table>{rows}</table>"

    body = "".join(
        [
            "<h1>pairsift report</h1>",
            "".join(f"<p><strong>Warning:</strong> {html.escape(w)}</p>"
                    for w in summary.get("warnings", [])),
            table("Pairs by status", summary["pairs"]["by_status"]),
            table("Pairs by label", summary["pairs"]["by_label"]),
            *(table(f"Translations ({lang}) by their own label", counts) for lang, counts
              in summary["pairs"].get("translations_by_label", {}).items()),
            table(
                "Noise",
                {"estimated noise ratio": summary.get("estimated_noise_ratio"), **summary.get("detection", {})},
            ),
            "<h2>Per-pair loss (the beta mixture's input)</h2>",
            _histogram_svg(histogram),
            table("Timings (s)", summary["timings_s"]),
        ]
    )
    style = "body{font-family:sans-serif;margin:2em}td{padding:2px 12px;border-bottom:1px solid #ddd}"
    with atomic_open(path, "w") as handle:
        handle.write(f"<!doctype html><html><head><meta charset='utf-8'><title>pairsift report</title>"
                     f"<style>{style}</style></head><body>{body}</body></html>\n")
