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


def labels_of(rules: np.ndarray) -> np.ndarray:
    """Each rule code's label (its first part), one numpy pass per distinct code."""
    rules = np.asarray(rules).astype(str)
    out = np.empty(len(rules), dtype=object)
    for code in set(rules.tolist()):
        out[rules == code] = Rule(code).label
    return out.astype(str)


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


def compare_many(name: str, values: np.ndarray, ops: str | list[str], other: float,
                 other_name: str = "") -> list[str]:
    """:func:`compare` of every value against one ``other`` (about 0.3 µs a value: pass 2
    writes a reason for every pair); the rare value whose 3 decimals tie with ``other``'s
    gets more digits from :func:`compare` itself."""
    values = np.asarray(values, dtype=np.float64)
    ops = [ops] * len(values) if isinstance(ops, str) else ops
    right = f"{other:.3f}"
    head = f"{other_name} {right}" if other_name else right
    left = [f"{v:.3f}" for v in values.tolist()]
    out = [f"{name} {lv} {op} {head}" for lv, op in zip(left, ops, strict=True)]
    for i in np.flatnonzero((np.asarray(left) == right) != (values == other)).tolist():
        out[i] = compare(name, float(values[i]), ops[i], other, other_name)
    return out


def _share_clauses(idx: np.ndarray, numbers: PairNumbers, cuts: Cuts) -> list[str]:
    """The noise-share rule's verdict of each pair in ``idx`` in words ("" when it did not apply)."""
    if cuts.keep_posterior is not None:
        p = numbers.p_clean[idx]
        ops = np.where(p >= cuts.keep_posterior, "≥", "<").tolist()
        clauses = compare_many(numbers.p_name, p, ops, cuts.keep_posterior, "cut")
        if numbers.consistency is None:
            return clauses
        values = np.asarray(numbers.consistency, dtype=np.float64)[idx].tolist()
        return [f"{c}, {numbers.consistency_name} {v:.3f}" if v == v and abs(v) != np.inf else c
                for c, v in zip(clauses, values, strict=True)]
    if cuts.loss_cut is not None and numbers.loss is not None:
        loss = np.asarray(numbers.loss, dtype=np.float64)[idx]
        ops = np.where(loss > cuts.loss_cut, ">", "≤").tolist()
        return compare_many("loss", loss, ops, cuts.loss_cut, "cut")
    return [""] * len(idx)


@dataclass
class _Group:
    """The pairs of one rule, and the pieces their words are made of."""

    idx: np.ndarray
    numbers: PairNumbers
    cuts: Cuts
    share: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.share = _share_clauses(self.idx, self.numbers, self.cuts)

    @property
    def inside(self) -> list[str]:
        return [f"; inside the noise-share cut ({c})" if c else "" for c in self.share]

    def u_vs(self, op: str, words: str) -> list[str]:
        u = self.numbers.uncertainty[self.idx]
        thr = float(self.cuts.uncertainty_threshold)
        return [words.format(c) for c in compare_many("u", u, op, thr, "u_thr")]

    def p_vs(self, op: str, cut: float, words: str, on: bool = True) -> list[str]:
        if not on:
            return [""] * len(self.idx)
        p = self.numbers.p_clean[self.idx]
        return [f"{words} ({c})" for c in compare_many(self.numbers.p_name, p, op, cut)]


def _join(*parts: list[str]) -> list[str]:
    return ["".join(row) for row in zip(*parts, strict=True)]


def _clean_certain(g: _Group) -> list[str]:
    return _join(g.u_vs("<", "determined ({}), its own caption holds the most belief"),
                 g.p_vs("≥", g.cuts.clean_threshold, ", and the mixture agrees", g.cuts.mixture_agrees),
                 g.inside)


def _hard_uncertain(g: _Group) -> list[str]:
    posterior = g.p_vs("≥", g.cuts.noisy_posterior, ", not more likely noise")
    return _join(g.u_vs("≥", "not determined ({})"),
                 [c if not s else "" for c, s in zip(posterior, g.share, strict=True)], g.inside)


def _hard_mixture_doubts(g: _Group) -> list[str]:
    return _join(g.u_vs("<", "determined ({}) and its own caption holds the most belief"),
                 g.p_vs("<", g.cuts.clean_threshold, ", but the mixture doubts it"), g.inside)


def _hard_rival(g: _Group) -> list[str]:
    why = (g.p_vs("≥", g.cuts.clean_threshold, ", but the mixture does not count it as noise")
           if g.cuts.posterior_rules
           else [", but only the noise-share count drops pairs (keep_rule noise_share)"] * len(g.idx))
    return _join(g.u_vs("<", "determined ({}): another caption holds more belief"), why, g.inside)


def _noisy_share(g: _Group) -> list[str]:
    return [f"{c}: outside the clean share the empirical null counts" for c in g.share]


def _noisy_rival(g: _Group) -> list[str]:
    return _join(g.u_vs("<", "determined ({}): another caption holds more belief"),
                 g.p_vs("<", g.cuts.clean_threshold, ", and the mixture agrees", g.cuts.mixture_agrees))


def _noisy_unlikely(g: _Group) -> list[str]:
    return _join(g.u_vs("≥", "not determined ({})"),
                 g.p_vs("<", g.cuts.noisy_posterior, " and more likely noise than clean"))


_GUIDED = {Rule.CLEAN_CERTAIN: _clean_certain, Rule.HARD_UNCERTAIN: _hard_uncertain,
           Rule.HARD_MIXTURE_DOUBTS: _hard_mixture_doubts, Rule.HARD_RIVAL: _hard_rival,
           Rule.NOISY_SHARE: _noisy_share, Rule.NOISY_LOSS_CUT: _noisy_share,
           Rule.NOISY_RIVAL: _noisy_rival, Rule.NOISY_UNLIKELY: _noisy_unlikely}


def _group_text(rule: Rule, idx: np.ndarray, numbers: PairNumbers, cuts: Cuts) -> list[str]:
    """The words of every pair in ``idx``, all decided by ``rule``."""
    if rule in _GUIDED:
        return _GUIDED[rule](_Group(idx, numbers, cuts))
    return _plain_text(rule, idx, numbers, cuts)


def _plain_text(rule: Rule, idx: np.ndarray, numbers: PairNumbers, cuts: Cuts) -> list[str]:
    """The one-comparison rules: the bmm recipe's and the baselines'."""
    p, n = numbers.p_clean[idx], len(idx)
    if rule in (Rule.CLEAN_POSTERIOR, Rule.NOISY_POSTERIOR):
        return compare_many(numbers.p_name, p, "≥" if rule is Rule.CLEAN_POSTERIOR else "<",
                            cuts.clean_threshold)
    if rule in (Rule.CLEAN_GMM, Rule.NOISY_GMM):
        op = ">" if rule is Rule.CLEAN_GMM else "≤"
        return [f"Gaussian mixture on the loss: {c}"
                for c in compare_many(numbers.p_name, p, op, cuts.clean_threshold)]
    if rule in (Rule.CLEAN_SIMILARITY, Rule.NOISY_SIMILARITY):
        kept = rule is Rule.CLEAN_SIMILARITY
        if cuts.similarity_threshold is not None and numbers.similarity is not None:
            sim = np.asarray(numbers.similarity, dtype=np.float64)[idx]
            return compare_many("similarity", sim, "≥" if kept else "<",
                                cuts.similarity_threshold, "threshold")
        return [f"similarity rank {'inside' if kept else 'outside'} the kept fraction"] * n
    if rule is Rule.CLEAN_UNFILTERED:
        return ["no division (method none): every pair is kept"] * n
    raise ValueError(f"no words for rule {rule!r}")


def explain(rules: np.ndarray, numbers: PairNumbers, cuts: Cuts) -> np.ndarray:
    """``code: words`` for every pair (see the module doc); "" where ``rules`` is ""."""
    rules = np.asarray(rules).astype(str)
    out = np.full(len(rules), "", dtype=object)
    for code in sorted(set(rules.tolist()) - {""}):
        rule = Rule(code)
        idx = np.flatnonzero(rules == code)
        out[idx] = [f"{code}: {words}" for words in _group_text(rule, idx, numbers, cuts)]
    return out


def reason_holds(reason: str) -> bool:
    """Whether every ``number OP number`` comparison written in ``reason`` is true of the
    printed numbers (what a reader checks; the tests check it on every pair of a run)."""
    import re

    for left, op, right in re.findall(r"(-?\d+\.\d+) ([<>≤≥]) (?:[a-z_ ]+ )?(-?\d+\.\d+)", reason):
        if not _OPS[op](float(left), float(right)):
            return False
    return True
