"""OUT/summary.json and OUT/report.html from the audit: counts, noise ratio, detection quality."""

from __future__ import annotations

import html
import importlib.metadata
from typing import Any

import numpy as np
import polars as pl

from pairsift.models.config import MixtureConfig
from pairsift.models.noise.fit import NoiseFit
from pairsift.models.storage.atomic import atomic_open, list_files

VERSIONED = ("pairsift", "torch", "apache-beam", "open_clip_torch", "transformers", "pyarrow")


def load_audit(audit_dir: str) -> pl.DataFrame:
    """Every audit shard under ``audit_dir`` (any fsspec path: read through it, not by name)."""
    from pairsift.models.storage.tables import read_table

    files = list_files(audit_dir, ".parquet")
    frames = [pl.from_arrow(read_table(f)) for f in files]
    frames = [f for f in frames if f.height]
    return pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()


def versions() -> dict[str, str]:
    found = {}
    for name in VERSIONED:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def detection_metrics(audit: pl.DataFrame, keep_labels: list[str]) -> dict[str, Any]:
    """Against ground truth (``is_noisy``) where the input carries it; empty otherwise."""
    if "is_noisy" not in audit.columns or "p_clean" not in audit.columns:
        return {}
    scored = audit.filter(pl.col("p_clean").is_not_null() & pl.col("is_noisy").is_not_null())
    if scored.height == 0:
        return {}
    truth = scored["is_noisy"].cast(pl.Boolean).to_numpy()
    noise_score = 1.0 - scored["p_clean"].to_numpy()
    kept = scored["label"].is_in(keep_labels).to_numpy()
    metrics: dict[str, Any] = {"true_noise_ratio": float(truth.mean()), "scored_pairs": int(scored.height)}
    if 0 < truth.sum() < len(truth):
        from sklearn.metrics import roc_auc_score

        metrics["detection_roc_auc"] = float(roc_auc_score(truth, noise_score))
    clean = ~truth
    metrics["kept_precision"] = float(clean[kept].mean()) if kept.any() else None
    metrics["kept_recall"] = float(kept[clean].mean()) if clean.any() else None
    return metrics


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
    audit: pl.DataFrame,
    *,
    input_pairs_expected: int | None,
    mixture: dict[str, Any],
    fit_info: dict[str, Any],
    timings: dict[str, float],
    counters: dict[str, int],
    config: dict[str, Any],
    keep_labels: list[str],
) -> dict[str, Any]:
    by_status = dict(sorted(audit.group_by("status").len().iter_rows())) if audit.height else {}
    labelled = audit.filter(pl.col("label").is_not_null()) if audit.height else audit
    by_label = dict(sorted(labelled.group_by("label").len().iter_rows())) if labelled.height else {}
    kept = sum(v for k, v in by_label.items() if k in keep_labels)
    summary: dict[str, Any] = {
        "pairs": {
            "input": int(audit.height),
            "by_status": by_status,
            "by_label": by_label,
            "kept": int(kept),
            "labelled_noisy_ratio": (by_label.get("noisy", 0) / labelled.height) if labelled.height else None,
        },
        "estimated_noise_ratio": mixture.get("noise_ratio"),
        "warnings": fit_warnings(mixture),
        "detection": detection_metrics(audit, keep_labels),
        "mixture": mixture,
        "fit": {k: v for k, v in fit_info.items() if k != "history"},
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "beam_counters": dict(sorted(counters.items())),
        "versions": versions(),
        "config": config,
    }
    if input_pairs_expected is not None:
        summary["pairs"]["expected_input"] = input_pairs_expected
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
