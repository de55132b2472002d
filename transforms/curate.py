"""Labelling and the audit rows of pass 2 (pure functions; the IO lives in pipeline/).

Given a shard's pass-1 rows, its scores and the fitted global state, decide each pair's label
and build its audit row (the kept pairs' ``KEY.json`` is built from those rows, by column, in
pipeline/kept_samples.py).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from pairsift.models.config import OutputConfig
from pairsift.models.noise.fit import NoiseFit
from pairsift.models.records import Status, is_internal_column

# the reasons of an embedded pair that gets no label (pipeline/audit_columns.py gives the same)
DUPLICATE_REASON = "same image bytes and caption as an earlier pair"
UNSCORED_REASON = "no score for an embedded pair"


def label_scores(
    scores: dict[str, np.ndarray], fit: NoiseFit, output: OutputConfig | None = None
) -> dict[str, np.ndarray]:
    """The noise fit's division of a shard's scored pairs: label, p_clean, soft_label,
    uncertainty, noise_kind_pred; per target language ``label_<lang>`` and ``p_clean_<lang>``
    ("" / NaN without that translation), and ``translations_dropped``, which says for a kept
    pair which of its translations do not ship and why. Under ``write_translations``
    "drop_pair" a noisy translation makes the pair noisy."""
    if not scores or len(next(iter(scores.values()))) == 0:
        return {}
    output = output or OutputConfig()
    division = fit.label(scores)
    label = np.asarray(division.label).astype(object)
    out = {
        "p_clean": np.asarray(division.p_clean, dtype=np.float64),
        "soft_label": np.asarray(division.soft_label, dtype=np.float64),
        "uncertainty": np.asarray(division.uncertainty, dtype=np.float64),
        "noise_kind_pred": np.asarray(fit.noise_kind(scores["loss"])).astype(str),
    }
    reasons: list[list[str]] = [[] for _ in range(len(label))]
    languages = fit.label_languages(scores)
    for lang, view in languages.items():
        out[f"label_{lang}"], out[f"p_clean_{lang}"] = view["label"], view["p_clean"]
        for i in np.flatnonzero(view["label"] == "noisy"):
            reasons[i].append(f"{lang}: translation labelled noisy "
                              f"(p_clean_{lang} {view['p_clean'][i]:.3f})")
    if output.write_translations == "drop_pair":
        label[np.asarray([bool(r) for r in reasons], dtype=bool)] = "noisy"
    if languages and output.write_translations in ("drop_translation", "drop_pair"):
        out["translations_dropped"] = np.asarray(["; ".join(r) for r in reasons], dtype=str)
    out["label"] = label.astype(str)
    return out


def clean_float(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return round(value, 6) if math.isfinite(value) else None


def finish_audit_row(
    base: dict[str, Any] | None,
    key: str,
    source_shard: str,
    duplicate: bool,
    scored: dict[str, Any] | None,
) -> dict[str, Any]:
    """The audit row of one input pair from its pass-1 row (or its absence) and its scores."""
    if base is None:
        return {
            "key": key,
            "source_shard": source_shard,
            "status": Status.READ_ERROR.value,
            "error": "pair missing from pass-1 output (input changed after pass 1?)",
            "label": None,
        }
    row = {k: v for k, v in base.items() if not is_internal_column(k)}
    row.setdefault("label", None)
    if row["status"] != Status.OK.value:
        return row
    if duplicate:
        row["status"] = Status.DUPLICATE.value
        row["error"] = DUPLICATE_REASON
        return row
    if scored is None:
        row["status"] = Status.EMBED_ERROR.value
        row["error"] = UNSCORED_REASON
        return row
    for name, value in scored.items():
        row[name] = value if isinstance(value, str) else clean_float(value)
    return row
