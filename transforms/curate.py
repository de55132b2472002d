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
from pairsift.models.noise.fit import NoiseFit, division_reasons
from pairsift.models.noise.reasons import Rule
from pairsift.models.records import Status, is_internal_column

# the reasons of an embedded pair that gets no label (pipeline/audit_columns.py gives the same)
DUPLICATE_REASON = "same image bytes and caption as an earlier pair"
UNSCORED_REASON = "no score for an embedded pair"


def duplicate_error(original: str | None) -> str:
    """A duplicate's error, naming the pair it copies ("shard/key") where the dedup job
    recorded it."""
    return f"{DUPLICATE_REASON} ({original})" if original else DUPLICATE_REASON


def label_scores(
    scores: dict[str, np.ndarray], fit: NoiseFit, output: OutputConfig | None = None
) -> dict[str, np.ndarray]:
    """The noise fit's division of a shard's scored pairs: label, reason, p_clean,
    soft_label, uncertainty, noise_kind_pred (partial / complete, for noisy pairs); per target
    language ``label_<lang>``, ``p_clean_<lang>`` and ``reason_<lang>`` ("" / NaN without that
    translation), and ``translations_dropped``, which says for a kept pair which of its
    translations do not ship and why. Under ``write_translations`` "drop_pair" a noisy
    translation makes the pair noisy (reason ``noisy.translation``)."""
    if not scores or len(next(iter(scores.values()))) == 0:
        return {}
    output = output or OutputConfig()
    division = fit.label(scores)
    label = np.asarray(division.label).astype(object)
    reason = np.asarray(division_reasons(division, scores), dtype=object)
    out = {
        "p_clean": np.asarray(division.p_clean, dtype=np.float64),
        "soft_label": np.asarray(division.soft_label, dtype=np.float64),
        "uncertainty": np.asarray(division.uncertainty, dtype=np.float64),
    }
    dropped: list[list[str]] = [[] for _ in range(len(label))]
    languages = fit.label_languages(scores)
    for lang, view in languages.items():
        out[f"label_{lang}"], out[f"p_clean_{lang}"] = view["label"], view["p_clean"]
        out[f"reason_{lang}"] = view["reason"]
        for i in np.flatnonzero(view["label"] == "noisy"):
            dropped[i].append(f"{lang}: translation labelled noisy "
                              f"(p_clean_{lang} {view['p_clean'][i]:.3f})")
    if output.write_translations == "drop_pair":
        drops = np.asarray([bool(r) for r in dropped], dtype=bool) & (label != "noisy")
        label[drops] = "noisy"
        for i in np.flatnonzero(drops):
            reason[i] = f"{Rule.NOISY_TRANSLATION.value}: {'; '.join(dropped[i])}, and " \
                        "write_translations is drop_pair"
    if languages and output.write_translations in ("drop_translation", "drop_pair"):
        out["translations_dropped"] = np.asarray(["; ".join(r) for r in dropped], dtype=str)
    out["noise_kind_pred"] = fit.noise_kind(scores["loss"], label)
    out["label"] = label.astype(str)
    out["reason"] = reason.astype(str)
    return out


def error_reason(status: str, error: str | None) -> str:
    """The ``reason`` of a pair without a label: its status, then the error in words."""
    return f"{status}: {error}" if error else status


def with_error_reasons(reason: list[Any], status: list[str], error: list[Any],
                       label: list[Any]) -> list[Any]:
    """``reason`` with every unlabelled pair's reason taken from its status and error (a
    labelled pair keeps the division's), so every audit row says why it ended as it did."""
    return [r if lab is not None else error_reason(s, e)
            for r, s, e, lab in zip(reason, status, error, label, strict=True)]


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
    original: str | None = None,
) -> dict[str, Any]:
    """The audit row of one input pair from its pass-1 row (or its absence) and its scores;
    an unlabelled row's ``reason`` is its status and error."""
    row = _audit_row(base, key, source_shard, duplicate, scored, original)
    if row["label"] is None:
        row["reason"] = error_reason(row["status"], row.get("error"))
    return row


def _audit_row(
    base: dict[str, Any] | None, key: str, source_shard: str, duplicate: bool,
    scored: dict[str, Any] | None, original: str | None,
) -> dict[str, Any]:
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
        row["error"] = duplicate_error(original)
        return row
    if scored is None:
        row["status"] = Status.EMBED_ERROR.value
        row["error"] = UNSCORED_REASON
        return row
    for name, value in scored.items():
        row[name] = value if isinstance(value, str) else clean_float(value)
    return row
