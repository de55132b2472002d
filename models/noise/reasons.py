"""Why each pair got its label: a stable rule code plus words, from the division's own numbers.

The division (:mod:`pairsift.models.noise.division`) records, per pair, which of its rules
decided the label (:class:`Rule`); :func:`explain` turns that code and the very values the
rule compared (the pair's loss, p_clean, uncertainty, and the fit's cuts) into the audit's
``reason``, e.g. ``noisy.loss_cut: loss 3.104 > cut 2.700 (the null's noise share)``. The
reason and the label therefore come from one computation and cannot disagree. Every
comparison is written ``value OP value`` with as many digits as it takes for the printed
numbers to keep the order the code saw (0.4999 is never printed as "0.500 < 0.5").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

import numpy as np


class Rule(str, Enum):
    """The rule that decided a pair's label; the part before the dot is the label."""

    CLEAN_CERTAIN = "clean.certain"  # determined, own caption on top, mixture agrees
    CLEAN_POSTERIOR = "clean.posterior"  # bmm / no uncertainty: p_clean ≥ clean threshold
    CLEAN_UNFILTERED = "clean.unfiltered"  # division method "none"
    CLEAN_SIMILARITY = "clean.similarity"  # CLIP-score filter
    CLEAN_GMM = "clean.gmm"
    HARD_UNCERTAIN = "hard.uncertain"  # u ≥ u_thr and not more likely noise
    HARD_MIXTURE_DOUBTS = "hard.mixture_doubts"  # determined match the mixture doubts
    HARD_RIVAL = "hard.rival_belief"  # another caption on top, but the mixture finds it clean
    NOISY_SHARE = "noisy.noise_share"  # fused p_clean below the null's noise-share cut
    NOISY_LOSS_CUT = "noisy.loss_cut"  # loss above the null's noise-share cut
    NOISY_RIVAL = "noisy.rival_belief"  # determined mismatch the mixture agrees with
    NOISY_UNLIKELY = "noisy.uncertain_unlikely"  # uncertain and more likely noise than clean
    NOISY_POSTERIOR = "noisy.posterior"  # bmm / no uncertainty: p_clean < clean threshold
    NOISY_SIMILARITY = "noisy.similarity"
    NOISY_GMM = "noisy.gmm"
    NOISY_TRANSLATION = "noisy.translation"  # write_translations "drop_pair"

    @property
    def label(self) -> str:
        return self.value.partition(".")[0]


@dataclass
class Cuts:
    """The global values a division compared pairs against (None: that rule did not apply)."""

    uncertainty_threshold: float | None = None
    clean_threshold: float = 0.5
    mixture_agrees: bool = True  # determined labels also needed p_clean's agreement
    posterior_rules: bool = True  # the rival-belief and unlikely rules could drop a pair
    noisy_posterior: float = 0.5
    keep_posterior: float | None = None  # fused posterior's noise-share cut
    loss_cut: float | None = None  # loss-only noise-share cut
    similarity_threshold: float | None = None


@dataclass
class PairNumbers:
    """One view's per-pair values, as the division read them, and how to name them."""

    p_clean: np.ndarray
    uncertainty: np.ndarray
    loss: np.ndarray | None = None
    similarity: np.ndarray | None = None
    consistency: np.ndarray | None = None
    p_name: str = "p_clean"
    consistency_name: str = "neighbour consistency"
    extra: dict[str, str] = field(default_factory=dict)


_OPS = {"<": np.less, ">": np.greater, "≤": np.less_equal, "≥": np.greater_equal}


def number_pair(a: float, b: float) -> tuple[str, str]:
    """``a`` and ``b`` printed with 3 decimals, or more (up to 9) until the printed values
    are as far apart as the values are, so a printed comparison keeps its direction."""
    for digits in (3, 4, 5, 6, 9):
        left, right = f"{a:.{digits}f}", f"{b:.{digits}f}"
        if (left == right) == (a == b):
            return left, right
    return repr(a), repr(b)  # closer than 1e-9: every digit


def compare(name: str, value: float, op: str, other: float, other_name: str = "") -> str:
    """``name value OP [other_name ]other``; the printed numbers satisfy OP."""
    left, right = number_pair(float(value), float(other))
    return f"{name} {left} {op} {other_name + ' ' if other_name else ''}{right}"


def _holds(value: float, other: float) -> str:
    """The operator that is true of ``value`` against ``other`` among ≥ / <."""
    return "≥" if value >= other else "<"


def _share_clause(i: int, numbers: PairNumbers, cuts: Cuts) -> str:
    """The noise-share rule's verdict of pair ``i`` in words (empty when it did not apply)."""
    if cuts.keep_posterior is not None:
        p = float(numbers.p_clean[i])
        clause = compare(numbers.p_name, p, _holds(p, cuts.keep_posterior), cuts.keep_posterior, "cut")
        if numbers.consistency is not None and np.isfinite(numbers.consistency[i]):
            clause += f", {numbers.consistency_name} {float(numbers.consistency[i]):.3f}"
        return clause
    if cuts.loss_cut is not None and numbers.loss is not None:
        loss = float(numbers.loss[i])
        op = ">" if loss > cuts.loss_cut else "≤"
        return compare("loss", loss, op, cuts.loss_cut, "cut")
    return ""


def _text(rule: Rule, i: int, numbers: PairNumbers, cuts: Cuts) -> str:
    p, u = float(numbers.p_clean[i]), float(numbers.uncertainty[i])
    p_name, u_thr = numbers.p_name, cuts.uncertainty_threshold
    share = _share_clause(i, numbers, cuts)
    inside = f"; inside the noise-share cut ({share})" if share else ""
    agrees = (f", and the mixture agrees ({compare(p_name, p, '≥', cuts.clean_threshold)})"
              if cuts.mixture_agrees else "")
    if rule is Rule.CLEAN_CERTAIN:
        return (f"certain ({compare('u', u, '<', u_thr)}), its own caption holds the most belief"
                f"{agrees}{inside}")
    if rule is Rule.HARD_UNCERTAIN:
        posterior = (f", not more likely noise ({compare(p_name, p, '≥', cuts.noisy_posterior)})"
                     if not share else "")
        return f"uncertain ({compare('u', u, '≥', u_thr)}){posterior}{inside}"
    if rule is Rule.HARD_MIXTURE_DOUBTS:
        return (f"certain ({compare('u', u, '<', u_thr)}) and its own caption holds the most "
                f"belief, but the mixture doubts it ({compare(p_name, p, '<', cuts.clean_threshold)})"
                f"{inside}")
    if rule is Rule.HARD_RIVAL:
        why = (f", but the mixture does not count it as noise "
               f"({compare(p_name, p, '≥', cuts.clean_threshold)})" if cuts.posterior_rules
               else ", but only the noise-share count drops pairs (keep_rule noise_share)")
        return f"certain ({compare('u', u, '<', u_thr)}) that another caption holds more belief{why}{inside}"
    if rule in (Rule.NOISY_SHARE, Rule.NOISY_LOSS_CUT):
        return f"{share}: outside the clean share the empirical null counts"
    if rule is Rule.NOISY_RIVAL:
        doubts = (f", and the mixture agrees ({compare(p_name, p, '<', cuts.clean_threshold)})"
                  if cuts.mixture_agrees else "")
        return f"certain ({compare('u', u, '<', u_thr)}) that another caption holds more belief{doubts}"
    if rule is Rule.NOISY_UNLIKELY:
        return (f"uncertain ({compare('u', u, '≥', u_thr)}) and more likely noise than clean "
                f"({compare(p_name, p, '<', cuts.noisy_posterior)})")
    if rule in (Rule.CLEAN_POSTERIOR, Rule.NOISY_POSTERIOR):
        return compare(p_name, p, "≥" if rule is Rule.CLEAN_POSTERIOR else "<", cuts.clean_threshold)
    if rule in (Rule.CLEAN_GMM, Rule.NOISY_GMM):
        op = ">" if rule is Rule.CLEAN_GMM else "≤"
        return f"Gaussian mixture on the loss: {compare(p_name, p, op, cuts.clean_threshold)}"
    if rule in (Rule.CLEAN_SIMILARITY, Rule.NOISY_SIMILARITY):
        return _similarity_text(rule, i, numbers, cuts)
    if rule is Rule.CLEAN_UNFILTERED:
        return "no division (method none): every pair is kept"
    raise ValueError(f"no words for rule {rule!r}")


def _similarity_text(rule: Rule, i: int, numbers: PairNumbers, cuts: Cuts) -> str:
    kept = rule is Rule.CLEAN_SIMILARITY
    if cuts.similarity_threshold is not None and numbers.similarity is not None:
        sim = float(numbers.similarity[i])
        return compare("similarity", sim, "≥" if kept else "<", cuts.similarity_threshold, "threshold")
    return f"similarity rank {'inside' if kept else 'outside'} the kept fraction"


def explain(rules: np.ndarray, numbers: PairNumbers, cuts: Cuts) -> np.ndarray:
    """``code: words`` for every pair (see the module doc); "" where ``rules`` is ""."""
    out = np.full(len(rules), "", dtype=object)
    for i, code in enumerate(rules.tolist()):
        if code:
            rule = Rule(code)
            out[i] = f"{rule.value}: {_text(rule, i, numbers, cuts)}"
    return out


def reason_holds(reason: str) -> bool:
    """Whether every ``number OP number`` comparison written in ``reason`` is true of the
    printed numbers (what a reader checks; the tests check it on every pair of a run)."""
    import re

    for left, op, right in re.findall(r"(-?\d+\.\d+) ([<>≤≥]) (?:[a-z_ ]+ )?(-?\d+\.\d+)", reason):
        if not _OPS[op](float(left), float(right)):
            return False
    return True
