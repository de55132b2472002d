"""OUT/report.html: what a reviewer reads to see what the run did and why a pair was dropped.

Built on the driver from bounded inputs only: summary.json's counts, the histograms and the
one noise fit (plots), and the galleries the tally job picked from the audit (at most a few
hundred rows, OUT/fit/gallery.json), whose thumbnails are read from the input once per shard.
Its size and build time do not grow with the number of pairs.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from pairsift.models.noise.fit import NoiseFit, NoiseHistograms
from pairsift.models.noise.null import storey_interval
from pairsift.models.storage.atomic import atomic_open, exists, list_files, read_json
from pairsift.pipeline.layout import RunLayout
from pairsift.pipeline.report import plots
from pairsift.pipeline.report.page import Page, Section, esc, gallery, number, status_table, table
from pairsift.pipeline.report.selection import GalleryCandidates
from pairsift.pipeline.report.thumbnails import PairId, thumbnails

log = logging.getLogger(__name__)

GALLERIES = (  # (name, title, how to read it)
    ("noisy", "Most confidently noisy pairs",
     "The dropped pairs the fit is surest of (lowest p_clean). If many of these look like "
     "real matches, the encoder does not suit this data: try another --encoder."),
    ("borderline_dropped", "Borderline: dropped",
     "Noisy pairs closest to being kept (highest p_clean among the dropped). Mistakes, if "
     "any, are here: a good cut leaves mostly mismatches on this side."),
    ("borderline_kept", "Borderline: kept",
     "Kept pairs closest to the cut (lowest p_clean among the kept). A good cut leaves mostly "
     "matches on this side; hard pairs ship with a soft label for robust training."),
    ("random_kept", "Random kept pairs",
     "A seeded random sample of what ships in OUT/shards: what a model trained on the "
     "curated set will see."),
)


TRUTH_FACTS = (("true_noise_ratio", "true noise share"),
               ("detection_roc_auc", "noisy-pair detection ROC-AUC"),
               ("kept_precision", "precision of the kept pairs"),
               ("kept_recall", "recall of the clean pairs"))


def noise_interval(hists: NoiseHistograms, fit: NoiseFit) -> tuple[float, float, float] | None:
    """The English fit's noise share with its 95 % interval, where an empirical null read it."""
    mixture = fit.mixture
    if mixture is None or mixture.null is None or mixture.null_fallback is not None:
        return None
    return storey_interval(hists.loss, hists.null_loss, mixture.null.lam)


def _summary_section(summary: dict[str, Any], interval: tuple[float, float, float] | None,
                     input_desc: str, output: str) -> Section:
    pairs = summary["pairs"]
    share = summary.get("estimated_noise_ratio")
    share_text = number(share)
    if interval is not None:
        share_text = f"{interval[1]:.3f} (95 % interval {interval[0]:.3f} – {interval[2]:.3f})"
    facts = [("input", input_desc), ("output", output), ("input pairs", pairs["input"]),
             ("kept (written to OUT/shards)", pairs["kept"]),
             ("estimated noise share", share_text)]
    detection = summary.get("detection") or {}
    for name, words in TRUTH_FACTS:
        if detection.get(name) is not None:
            facts.append((f"{words} (the input's ground truth)", detection[name]))
    warnings = "".join(f'<div class="warn"><strong>Warning:</strong> {esc(w)}</div>'
                       for w in summary.get("warnings", []))
    languages = "".join(
        f"<h3>Translations ({esc(lang)}) by their own label</h3>"
        + table(sorted(counts.items()), ("label", "translations"))
        for lang, counts in pairs.get("translations_by_label", {}).items())
    body = (warnings + '<div class="summary">' + table(facts)
            + table(sorted(pairs["by_label"].items()), ("label", "pairs"))
            + table(sorted(pairs["by_status"].items()), ("status", "pairs")) + "</div>" + languages)
    return Section("Summary", "What went in, what came out, and how much of the input the fit "
                   "believes is mismatched. Every input pair has exactly one audit row; a pair "
                   "is kept when its label is clean or hard.", body, "summary")


def _plot_sections(hists: NoiseHistograms, fit: NoiseFit, tally: Any) -> list[Section]:
    out = [Section(
        "Loss and the fitted mixture",
        "Each pair's loss (low: its caption matches its image better than other captions do). "
        "The dashed curve is the loss of deliberately mismatched pairs (captions swapped), "
        "scaled by the estimated noise share: where it covers the observed bars, those pairs "
        "are noise. The green and red curves are the beta mixture's two components, each with "
        "its own fitted weight (the noise share in the summary is the null's, which the labels "
        "use). The solid line marks the noise share counted on the loss alone; where the "
        "neighbour consistency is fused in, the labels cut p_clean instead (next plot). The "
        "dotted line is where p_clean, by the loss alone, falls below the clean threshold.",
        plots.loss_plot(hists, fit), "mixture")]
    out.append(Section(
        "Clean posterior", "p_clean of every labelled pair (log scale). Pairs left of the solid "
        "line (the noise-share cut) are noisy; a few to its right may be dropped by the "
        "uncertainty rules, and their reasons say so.",
        plots.posterior_plot(tally.p_clean, fit), "posterior"))
    out.append(Section(
        "Uncertainty", "Evidential uncertainty of each pair's opinion. The threshold is relative "
        "to this run (a quantile of u over the pairs the mixture keeps, "
        "division.uncertainty_quantile), since u's scale moves with the towers: kept pairs "
        "below it are determined (clean when their own caption holds the most belief), those "
        "above it hard, shipped with a soft label.",
        plots.uncertainty_plot(hists, fit), "uncertainty"))
    if hists.consistency.sum() and hists.null_consistency.sum():
        out.append(Section(
            "Neighbour consistency", "Whether a pair's caption agrees with the captions of "
            "its image's nearest neighbours, for real pairs and for swapped ones (dashed).",
            plots.consistency_plot(hists.consistency, hists.null_consistency,
                                   hists.consistency_range, "neighbour consistency",
                                   fit.noise_ratio), "consistency"))
    for lang, figure in plots.language_plots(hists, fit).items():
        out.append(Section(
            f"Translations ({lang})", "How well each translation agrees with its English "
            "source (the margin over rival sentences), against swapped translations (dashed). "
            "Low-margin translations are labelled noisy and do not ship.", figure, f"lang-{lang}"))
    out.append(Section("Pairs per input shard", "Each shard's pairs by outcome: a shard with "
                       "many errors or much more noise than the rest deserves a look at its "
                       "source.", plots.shard_plot(tally.shard_outcomes()), "shards"))
    return out


def _gallery_sections(chosen: GalleryCandidates, thumbs: dict[PairId, str],
                      langs: list[str]) -> list[Section]:
    out = [Section(title, how, gallery(chosen.rows(name), thumbs), f"g-{name}")
           for name, title, how in GALLERIES]
    for lang in langs:
        out.append(Section(
            f"Translations most likely corrupted ({lang})",
            f"The {lang} translations of lowest p_clean_{lang}, beside their English source. "
            "A noisy translation is left out of the shards (KEY.json says why).",
            gallery(chosen.rows(f"translation_{lang}"), thumbs, lang), f"g-translation-{lang}"))
    statuses = sorted(n for n in chosen.galleries if n.startswith("status_"))
    if statuses:
        body = "".join(f"<h3>{esc(n.removeprefix('status_'))}</h3>{status_table(chosen.rows(n))}"
                       for n in statuses)
        out.append(Section("Pairs without a label", "Up to 8 examples of each status other "
                           "than ok, with the error. They are in the audit, never in the shards.",
                           body, "statuses"))
    return out


def _files_section(layout: RunLayout) -> Section:
    audit = list_files(layout.audit, ".parquet")
    links = "".join(f'<li><a href="audit/{esc(p.rsplit("/", 1)[-1])}">audit/'
                    f'{esc(p.rsplit("/", 1)[-1])}</a></li>' for p in audit[:50])
    more = f"<li>… and {len(audit) - 50:,} more</li>" if len(audit) > 50 else ""
    body = (f"<ul>{links}{more}</ul><p>Ask about one pair: <code>pairsift audit {esc(layout.root)} "
            "--key KEY</code>; list the noisy ones: <code>pairsift audit "
            f"{esc(layout.root)} --label noisy --sort p_clean --limit 20</code>; or query "
            "<code>audit/*.parquet</code> with duckdb or polars.</p>")
    return Section("Files", "The audit holds one row per input pair with its status, label, "
                   "scores and reason; the curated shards, their parquet and stats sit in "
                   "shards/; summary.json has every number on this page.", body, "files")


def build_report(layout: RunLayout, summary: dict[str, Any], fit: NoiseFit, tally: Any,
                 input_desc: str) -> str:
    """The report's HTML (see the module doc)."""
    started = time.monotonic()
    from pairsift.pipeline.score_pass import noise_histograms

    hists = noise_histograms(layout)
    chosen = GalleryCandidates()
    if exists(layout.gallery):
        saved = read_json(layout.gallery)
        chosen = GalleryCandidates({k: [((), row) for row in rows] for k, rows in saved.items()})
    wanted = {(str(r["source_shard"]), str(r["key"])) for name, rows in chosen.galleries.items()
              if not name.startswith("status_") for _, r in rows}
    thumbs = thumbnails(layout, wanted)
    langs = sorted(hists.languages)
    page = Page("pairsift report", f"Run in <code>{esc(layout.root)}</code>.")
    page.sections = [_summary_section(summary, noise_interval(hists, fit), input_desc, layout.root),
                     *_plot_sections(hists, fit, tally), *_gallery_sections(chosen, thumbs, langs),
                     _files_section(layout)]
    timings = summary.get("timings_s") or {}
    if timings:
        page.sections.append(Section("Timings", "Seconds per stage of this run.",
                                     table(sorted(timings.items()), ("stage", "seconds")), "timings"))
    log.info("report: %d thumbnails of %d chosen pairs, built in %.1f s", len(thumbs), len(wanted),
             time.monotonic() - started)
    return page.render()


def write_report(layout: RunLayout, summary: dict[str, Any], fit: NoiseFit, tally: Any,
                 input_desc: str) -> None:
    text = build_report(layout, summary, fit, tally, input_desc)
    with atomic_open(layout.report, "w") as handle:
        handle.write(text)
