"""The report's plots, drawn with matplotlib and inlined as SVG (text stays text).

Every plot reads only the run's histograms (OUT/fit/histograms.json, tally.json) and the one
noise fit, so a report costs the same at a thousand pairs as at a billion. Cut lines carry
SVG ids (``cut-noise-share``, ``cut-bayes``, ``cut-uncertainty``, ``cut-keep-posterior``) so
that tools and tests can find them.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from pairsift.models.noise.fit import NoiseFit, NoiseHistograms  # noqa: E402

MAX_BARS = 120  # a histogram is drawn with at most this many steps
COLOURS = {"clean": "#2e8540", "hard": "#d98b00", "noisy": "#c0392b", "null": "#555555",
           "observed": "#3465a4"}
STYLE = {"svg.fonttype": "none", "svg.hashsalt": "pairsift", "font.size": 9,
         "axes.spines.top": False, "axes.spines.right": False}


@contextmanager
def figure(width: float = 7.0, height: float = 2.8) -> Iterator[tuple[plt.Figure, plt.Axes]]:
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(width, height), layout="constrained")
        try:
            yield fig, ax
        finally:
            plt.close(fig)


def svg(fig: plt.Figure) -> str:
    """The figure as an inline ``<svg>`` element (no XML prolog, no timestamp)."""
    out = io.StringIO()
    fig.savefig(out, format="svg", metadata={"Date": None})
    text = out.getvalue()
    return text[text.index("<svg"):]


def coarse(counts: np.ndarray, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
    """``counts`` over equal bins of [lo, hi] merged to at most ``MAX_BARS`` bins and trimmed
    to the occupied range: (edges, counts)."""
    counts = np.asarray(counts, dtype=np.float64)
    edges = np.linspace(lo, hi, counts.size + 1)
    group = max(1, int(np.ceil(counts.size / MAX_BARS)))
    usable = counts.size - counts.size % group
    merged = counts[:usable].reshape(-1, group).sum(axis=1)
    if usable < counts.size:
        merged = np.append(merged, counts[usable:].sum())
    edges = np.append(edges[:usable + 1:group], edges[-1]) if usable < counts.size else edges[::group]
    occupied = np.flatnonzero(merged)
    if occupied.size == 0:
        return edges, merged
    first, last = occupied[0], occupied[-1]
    return edges[first:last + 2], merged[first:last + 1]


def density(edges: np.ndarray, counts: np.ndarray, total: float) -> np.ndarray:
    return counts / max(total, 1.0) / np.diff(edges)


def loss_plot(hists: NoiseHistograms, fit: NoiseFit) -> str:
    """The per-pair loss histogram with the fitted components, the empirical null scaled by
    the estimated noise share, and the cuts."""
    lo, hi = hists.loss_range
    edges, counts = coarse(hists.loss, lo, hi)
    with figure(width=9.0) as (fig, ax):
        ax.stairs(density(edges, counts, counts.sum()), edges, fill=True, alpha=0.35,
                  color=COLOURS["observed"], label=f"observed ({int(hists.loss.sum()):,} pairs)")
        mixture = fit.mixture
        if hists.null_loss.sum() > 0:
            null_edges, null_counts = coarse(hists.null_loss, lo, hi)
            share = mixture.noise_ratio if mixture is not None else 1.0
            ax.stairs(share * density(null_edges, null_counts, null_counts.sum()), null_edges,
                      color=COLOURS["null"], linestyle="--", linewidth=1.2,
                      label=f"empirical null × noise share {share:.2f}")
        if mixture is not None:
            grid = np.linspace(edges[0], edges[-1], 400)
            parts = mixture.component_densities(grid)
            ax.plot(grid, parts[:, 0], color=COLOURS["clean"], label="clean component")
            ax.plot(grid, parts[:, 1], color=COLOURS["noisy"], label="noisy component")
            _loss_cuts(ax, fit, grid)
        ax.set_xlabel("per-pair loss (lower: caption matches its image)")
        ax.set_ylabel("density")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8)
        return svg(fig)


def _loss_cuts(ax: plt.Axes, fit: NoiseFit, grid: np.ndarray) -> None:
    mixture = fit.mixture
    assert mixture is not None
    keep = mixture.keep_loss()
    if keep is not None:
        what = ("noise-share cut" if fit.keep_posterior is None
                else "noise share counted on the loss alone\n(the labels cut p_clean: next plot)")
        ax.axvline(keep, color="black", linewidth=1.4, gid="cut-noise-share",
                   label=f"{what}: loss {keep:.3f}")
    posterior = mixture.posterior_clean(grid)
    below = np.flatnonzero(posterior < fit.division.clean_threshold)
    if below.size:
        ax.axvline(grid[below[0]], color="black", linestyle=":", linewidth=1.2, gid="cut-bayes",
                   label=f"p_clean = {fit.division.clean_threshold:g} (loss {grid[below[0]]:.3f})")


def posterior_plot(counts: np.ndarray, fit: NoiseFit) -> str:
    """Labelled pairs by p_clean, with the cut the division keeps by."""
    counts = np.asarray(counts, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, counts.size + 1)
    with figure(width=8.5, height=2.4) as (fig, ax):
        ax.stairs(counts, edges, fill=True, alpha=0.5, color=COLOURS["observed"])
        if fit.keep_posterior is not None:
            ax.axvline(fit.keep_posterior, color="black", linewidth=1.4, gid="cut-keep-posterior",
                       label=f"noise-share cut (p_clean {fit.keep_posterior:.3f})")
        ax.axvline(fit.division.clean_threshold, color="black", linestyle=":", linewidth=1.2,
                   gid="cut-clean-threshold", label=f"clean threshold {fit.division.clean_threshold:g}")
        ax.set_yscale("symlog", linthresh=1.0)
        ax.set_xlabel("p_clean (posterior that the pair matches)")
        ax.set_ylabel("pairs")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8)
        return svg(fig)


def uncertainty_plot(hists: NoiseHistograms, fit: NoiseFit) -> str:
    """The evidential uncertainty of every pair, with the threshold above which a pair is hard."""
    per_u = np.asarray(hists.loss_uncertainty, dtype=np.float64).sum(axis=0)
    edges, counts = coarse(per_u, 0.0, 1.0)
    with figure(height=2.4) as (fig, ax):
        ax.stairs(counts, edges, fill=True, alpha=0.5, color=COLOURS["hard"])
        if fit.uncertainty_threshold is not None:
            ax.axvline(fit.uncertainty_threshold, color="black", linewidth=1.4, gid="cut-uncertainty",
                       label=f"u threshold {fit.uncertainty_threshold:.3f}: above it a kept pair is hard")
            ax.legend(loc="upper left", frameon=False, fontsize=8)
        ax.set_xlabel("uncertainty u (Dirichlet: (K + 1) / S)")
        ax.set_ylabel("pairs")
        return svg(fig)


def consistency_plot(observed: np.ndarray, null: np.ndarray, value_range: tuple[float, float],
                     xlabel: str, noise_ratio: float | None) -> str:
    """An agreement score (neighbour consistency, translation margin) of the real pairs
    against the same score of deliberately mismatched pairs (the null)."""
    lo, hi = value_range
    edges, counts = coarse(observed, lo, hi)
    null_edges, null_counts = coarse(null, lo, hi)
    with figure(height=2.4) as (fig, ax):
        ax.stairs(density(edges, counts, counts.sum()), edges, fill=True, alpha=0.4,
                  color=COLOURS["observed"], label=f"observed ({int(np.sum(observed)):,})")
        share = 1.0 if noise_ratio is None else noise_ratio
        label = f"null × noise share {share:.2f}"
        if share < 0.05:  # scaled, it would be a flat line: show its shape
            share, label = 1.0, f"null (noise share {noise_ratio:.2f}: not scaled)"
        ax.stairs(share * density(null_edges, null_counts, null_counts.sum()), null_edges,
                  color=COLOURS["null"], linestyle="--", label=label)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("density")
        ax.legend(loc="upper left", frameon=False, fontsize=8)
        return svg(fig)


def shard_plot(outcomes: dict[str, dict[str, int]], max_shards: int = 40) -> str:
    """Pairs per input shard by outcome (stacked); past ``max_shards`` shards, the spread of
    each shard's noisy share instead (one bar a shard would be unreadable)."""
    if not outcomes:
        return ""
    names = sorted(outcomes)
    kinds = ["clean", "hard", "noisy"]
    others = sorted({k for counts in outcomes.values() for k in counts} - set(kinds))
    if len(names) > max_shards:
        return _shard_spread(outcomes)
    outcomes_order = kinds + others
    with figure(width=8.0, height=max(1.8, 0.22 * len(names) + 0.8)) as (fig, ax):
        left = np.zeros(len(names))
        rows = np.arange(len(names))  # positions, not category units: shard names look numeric
        palette = plt.get_cmap("tab10")
        for i, kind in enumerate(outcomes_order):
            values = np.asarray([outcomes[n].get(kind, 0) for n in names], dtype=np.float64)
            if not values.any():
                continue
            colour = COLOURS.get(kind, palette((i - len(kinds)) % 10))
            ax.barh(rows, values, left=left, color=colour, label=kind)
            left += values
        ax.set_yticks(rows, names)
        ax.invert_yaxis()
        ax.set_xlabel("pairs")
        ax.set_ylabel("input shard")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8)
        return svg(fig)


def _shard_spread(outcomes: dict[str, dict[str, int]]) -> str:
    shares = [counts.get("noisy", 0) / max(1, sum(counts.values())) for counts in outcomes.values()]
    with figure(height=2.4) as (fig, ax):
        ax.hist(shares, bins=40, range=(0.0, 1.0), color=COLOURS["noisy"], alpha=0.6)
        ax.set_xlabel(f"share of a shard's pairs labelled noisy ({len(shares):,} shards)")
        ax.set_ylabel("shards")
        return svg(fig)


def language_plots(hists: NoiseHistograms, fit: NoiseFit) -> dict[str, str]:
    """Per target language: its translations' margin against their English sources, with
    the swapped-translation null."""
    out = {}
    for lang, lang_hists in hists.languages.items():
        if lang_hists.consistency.sum() == 0:
            continue
        lang_fit = fit.languages.get(lang)
        out[lang] = consistency_plot(
            lang_hists.consistency, lang_hists.null_consistency, lang_hists.consistency_range,
            f"translation margin ({lang} against its English source)",
            None if lang_fit is None else lang_fit.noise_ratio,
        )
    return out
