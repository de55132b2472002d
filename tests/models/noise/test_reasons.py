"""Reasons: every labelled pair's rule code and words agree with its label and its numbers."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest

from pairsift.models.config import DivisionConfig, OutputConfig, PairsiftConfig
from pairsift.models.noise.consistency import share_threshold
from pairsift.models.noise.division import Division, divide, fused, share_cut
from pairsift.models.noise.fit import (
    NoiseFit,
    NoiseHistograms,
    division_reasons,
    fit_scores,
    language_view,
)
from pairsift.models.noise.mixture import BetaMixture
from pairsift.models.noise.reasons import Rule, compare, number_pair, reason_holds
from pairsift.models.noise.translation_margin import MARGIN_RANGE
from pairsift.models.training.scoring import loss_range
from pairsift.transforms.curate import label_scores

# ------------------------------------------------------------------ printing numbers


def test_number_pair_keeps_the_direction_of_close_values() -> None:
    left, right = number_pair(0.4999, 0.5)
    assert left != right and float(left) < float(right)
    assert (left, right) == ("0.4999", "0.5000")
    for a, b in ((0.49999, 0.5), (0.5, 0.499999), (2.7, 2.6999999), (0.1234567, 0.1234568)):
        left, right = number_pair(a, b)
        assert left != right
        assert (float(left) < float(right)) == (a < b)
    assert number_pair(0.5, 0.5) == ("0.500", "0.500")
    assert number_pair(1 / 3, 1 / 3) == ("0.333", "0.333")
    assert number_pair(3.104, 2.7) == ("3.104", "2.700")  # a clear gap: 3 decimals
    assert number_pair(0.1, 0.9) == ("0.100", "0.900")
    assert compare("p_clean", 0.4999, "<", 0.5, "cut") == "p_clean 0.4999 < cut 0.5000"
    assert compare("u", 0.25, "<", 0.5) == "u 0.250 < 0.500"


def test_reason_holds_checks_the_printed_comparisons() -> None:
    right = ("noisy.loss_cut: loss 3.104 > cut 2.700: outside the clean share the empirical "
             "null counts")
    assert reason_holds(right)
    assert reason_holds("clean.certain: certain (u 0.250 < 0.500), and the mixture agrees "
                        "(p_clean 0.600 ≥ 0.500); inside the noise-share cut (p_clean 0.6000 "
                        "≥ cut 0.5999)")
    assert reason_holds(f"noisy.noise_share: {compare('p_clean', 0.4999, '<', 0.5, 'cut')}")
    assert not reason_holds("noisy.noise_share: p_clean 0.600 < cut 0.500")
    assert not reason_holds("hard.uncertain: uncertain (u 0.400 ≥ 0.500)")
    # the second comparison of a reason is read too
    assert not reason_holds("clean.certain: certain (u 0.100 < 0.500), and the mixture agrees "
                            "(p_clean 0.400 ≥ 0.500)")
    assert not reason_holds("noisy.loss_cut: loss 2.700 > cut 2.700")


def test_every_rule_code_names_its_label() -> None:
    for rule in Rule:
        assert rule.label in ("clean", "hard", "noisy")
        assert rule.value.startswith(rule.label + ".")
    assert len({rule.value for rule in Rule}) == len(Rule)


# ------------------------------------------------------------------ synthetic scores

N = 4000
CLEAN, NOISY, UNSURE, UNSURE_NOISY, RIVAL_CLEAN, TOP_NOISY = range(6)


def _synthetic(seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Clean pairs (low loss, own caption on top, low u), noisy ones (high loss, a rival on
    top), uncertain ones of either loss, and the two disagreements (a rival on top with a
    low loss; the own caption on top with a high loss). Returns scores, null losses and
    null consistency."""
    rng = np.random.default_rng(seed)
    kind = rng.choice(6, size=N, p=[0.55, 0.25, 0.08, 0.05, 0.04, 0.03])
    high = np.isin(kind, [NOISY, UNSURE_NOISY, TOP_NOISY])
    loss = np.where(high, rng.normal(2.4, 0.3, N), rng.normal(0.8, 0.25, N)).clip(0.02, 3.7)
    top = np.isin(kind, [CLEAN, TOP_NOISY]) | ((kind == UNSURE) & (rng.random(N) < 0.5))
    u = np.where(np.isin(kind, [UNSURE, UNSURE_NOISY]), rng.uniform(0.6, 0.95, N),
                 rng.uniform(0.05, 0.45, N))
    belief = np.clip(1.0 - loss / 3.0, 0.0, 1.0) * (1.0 - u)
    rival = np.where(top, 0.5 * belief, np.minimum(belief + 0.1, 1.0 - u))
    scores = {
        "loss": loss, "belief": belief, "uncertainty": u, "top": top.astype(float),
        "belief_neg_max": rival,
        "similarity": 0.35 - 0.1 * loss + rng.normal(0.0, 0.02, N),
        "consistency": np.where(high, rng.normal(0.0, 0.1, N), rng.normal(0.6, 0.1, N)),
    }
    return scores, rng.normal(2.4, 0.3, N).clip(0.02, 3.7), rng.normal(0.0, 0.1, N)


def _without_consistency(cfg: PairsiftConfig) -> PairsiftConfig:
    return cfg.with_method(consistency=dataclasses.replace(cfg.consistency, enabled=False))


@pytest.fixture(scope="module")
def runs() -> dict[str, tuple[Division, dict[str, np.ndarray], BetaMixture | None, DivisionConfig]]:
    """Every division of the synthetic scores: name → (division, scores, mixture, config)."""
    cfg = PairsiftConfig()
    scores, null_loss, null_consistency = _synthetic()
    bounds = loss_range(cfg.train)
    fit = fit_scores(scores, cfg, bounds, null_loss, null_consistency)
    assert fit.mixture is not None and fit.mixture.consistency is not None
    plain = {k: v for k, v in scores.items() if k != "consistency"}
    loss_fit = fit_scores(plain, _without_consistency(cfg), bounds, null_loss)
    assert loss_fit.mixture is not None and loss_fit.mixture.consistency is None
    mix, loss_mix = fit.mixture, loss_fit.mixture
    cut_sim = float(np.median(scores["similarity"]))
    plan = {
        "both_fused": (scores, mix, DivisionConfig()),
        "noise_share_fused": (scores, mix, DivisionConfig(keep_rule="noise_share")),
        "both_loss_cut": (plain, loss_mix, DivisionConfig()),
        "noise_share_loss_cut": (plain, loss_mix, DivisionConfig(keep_rule="noise_share")),
        "posterior": (scores, mix, DivisionConfig(keep_rule="posterior")),
        "posterior_absolute": (scores, mix, DivisionConfig(keep_rule="posterior",
                                                           uncertainty_quantile=None)),
        "posterior_no_agreement": (scores, mix, DivisionConfig(keep_rule="posterior",
                                                               mixture_agrees=False)),
        "no_mixture": (scores, None, DivisionConfig()),
        "no_uncertainty": (scores, mix, DivisionConfig(use_uncertainty=False)),
        "bmm": (scores, mix, DivisionConfig(method="bmm")),
        "gmm": (scores, None, DivisionConfig(method="gmm")),
        "clip_score": (scores, None, DivisionConfig(method="clip_score", keep_fraction=0.7)),
        "clip_score_threshold": (scores, None, DivisionConfig(method="clip_score",
                                                              similarity_threshold=cut_sim)),
        "none": (scores, None, DivisionConfig(method="none")),
    }
    out = {name: (divide(s, m, c), s, m, c) for name, (s, m, c) in plan.items()}
    # what ships: the fit's global cuts (histogram u_thr and fused noise-share cut)
    out["fit_fused"] = (fit.label(scores), scores, mix, fit.division)
    out["fit_loss_cut"] = (loss_fit.label(plain), plain, loss_mix, loss_fit.division)
    return out


_QUOTED = re.compile(r"(?<![\w.])(p_clean|u|loss|similarity|cut|threshold) (-?\d+\.\d+)")


def _same_to_printed_precision(printed: str, value: float) -> bool:
    digits = len(printed.partition(".")[2])
    return f"{value:.{digits}f}" == printed


def _check_pair(i: int, text: str, division: Division, scores: dict[str, np.ndarray]) -> list[str]:
    """What is wrong with pair ``i``'s reason (empty: nothing)."""
    code = str(division.rule[i])
    problems = []
    if Rule(code).label != division.label[i]:
        problems.append(f"rule {code} but label {division.label[i]}")
    if not text.startswith(code + ": "):
        problems.append("does not start with its rule code")
    if not reason_holds(text):
        problems.append("a printed comparison is false")
    cuts = division.cuts
    share = cuts.keep_posterior if cuts.keep_posterior is not None else cuts.loss_cut
    values = {"p_clean": division.p_clean[i], "u": division.uncertainty[i],
              "loss": scores["loss"][i], "similarity": scores["similarity"][i],
              "cut": share, "threshold": cuts.similarity_threshold}
    for name, printed in _QUOTED.findall(text):
        if values[name] is None or not _same_to_printed_precision(printed, float(values[name])):
            problems.append(f"quotes {name} {printed}, the pair's is {values[name]}")
    u_thr = re.search(r"\(u -?\d+\.\d+ [<≥] u_thr (-?\d+\.\d+)\)", text)
    if u_thr and not _same_to_printed_precision(u_thr.group(1), cuts.uncertainty_threshold):
        problems.append(f"quotes u_thr {u_thr.group(1)}, the cut is {cuts.uncertainty_threshold}")
    return problems


RUN_NAMES = ("both_fused", "noise_share_fused", "both_loss_cut", "noise_share_loss_cut",
             "posterior", "posterior_absolute", "posterior_no_agreement", "no_mixture",
             "no_uncertainty", "bmm", "gmm", "clip_score", "clip_score_threshold", "none",
             "fit_fused", "fit_loss_cut")
@pytest.mark.parametrize("name", RUN_NAMES)
def test_every_pair_has_a_true_reason_that_names_its_label(runs, name: str) -> None:
    division, scores, _, _ = runs[name]
    assert division.rule is not None and len(division.rule) == N
    reasons = division_reasons(division, scores)
    assert len(reasons) == N and all(reasons)
    problems = [f"{i}: {p}: {reasons[i]}" for i in range(N)
                for p in _check_pair(i, str(reasons[i]), division, scores)]
    assert not problems, "\n".join(problems[:10])


def test_every_rule_but_the_translation_one_fires(runs) -> None:
    assert set(runs) == set(RUN_NAMES)
    fired = {str(code) for division, *_ in runs.values() for code in division.rule.tolist()}
    missing = {rule.value for rule in Rule} - {Rule.NOISY_TRANSLATION.value} - fired
    assert not missing, f"rules no configuration exercised: {sorted(missing)}"
    assert fired <= {rule.value for rule in Rule}


def test_each_run_reads_the_cuts_it_applied(runs) -> None:
    fused_cut = runs["both_fused"][0].cuts
    assert fused_cut.keep_posterior is not None and fused_cut.loss_cut is None
    loss_cut = runs["both_loss_cut"][0].cuts
    assert loss_cut.loss_cut is not None and loss_cut.keep_posterior is None
    assert loss_cut.loss_cut == runs["both_loss_cut"][2].keep_loss()
    for name in ("posterior", "no_mixture"):
        cuts = runs[name][0].cuts
        assert cuts.keep_posterior is None and cuts.loss_cut is None
        assert cuts.uncertainty_threshold == runs[name][0].uncertainty_threshold
    assert runs["posterior_absolute"][0].cuts.uncertainty_threshold == 0.5
    fit_cuts = runs["fit_fused"][0].cuts
    assert fit_cuts.keep_posterior is not None and fit_cuts.uncertainty_threshold is not None
    threshold = runs["clip_score_threshold"][0].cuts.similarity_threshold
    assert threshold == runs["clip_score_threshold"][3].similarity_threshold


# ------------------------------------------------------------------ labels unchanged


def _previous_labels(scores: dict[str, np.ndarray], mixture: BetaMixture | None,
                     cfg: DivisionConfig, division: Division,
                     keep_posterior: float | None = None) -> np.ndarray:
    """The guided division's labels as the code wrote them before it named its rules."""
    p, u = division.p_clean, division.uncertainty
    n = len(p)
    determined = u < division.uncertainty_threshold
    top = np.asarray(scores["top"]) > 0.5
    agrees = p >= cfg.clean_threshold if cfg.mixture_agrees else np.ones(n, dtype=bool)
    label = np.full(n, "hard", dtype=object)
    label[determined & top & agrees] = "clean"
    cut = share_cut(mixture, cfg)
    if cut is not None and fused(mixture, scores):
        assert mixture is not None
        if keep_posterior is None:
            keep_posterior = share_threshold(p, None, 1.0 - mixture.noise_ratio)
        label[p < keep_posterior] = "noisy"
    elif cut is not None:
        label[np.asarray(scores["loss"]) > cut] = "noisy"
    if cut is None or cfg.keep_rule == "both":
        doubts = p < cfg.clean_threshold if cfg.mixture_agrees else np.ones(n, dtype=bool)
        label[determined & ~top & doubts] = "noisy"
        label[~determined & (p < cfg.noisy_posterior)] = "noisy"
    return label.astype(str)


@pytest.mark.parametrize("name", ["both_fused", "noise_share_fused", "both_loss_cut",
                                  "noise_share_loss_cut", "posterior", "posterior_absolute",
                                  "posterior_no_agreement", "no_mixture", "fit_fused",
                                  "fit_loss_cut"])
def test_naming_the_rules_changed_no_label(runs, name: str) -> None:
    division, scores, mixture, cfg = runs[name]
    if mixture is not None:
        consistency = scores.get("consistency")
        np.testing.assert_array_equal(division.p_clean,
                                      mixture.posterior(scores["loss"], consistency))
    keep = division.cuts.keep_posterior if name.startswith("fit_") else None
    expected = _previous_labels(scores, mixture, cfg, division, keep)
    np.testing.assert_array_equal(division.label, expected)
    assert len(set(expected.tolist())) == 3 or name.startswith("noise_share")


def test_the_baselines_labels_follow_their_scores(runs) -> None:
    for name, (division, scores, _, cfg) in runs.items():
        if name in ("bmm", "no_uncertainty"):
            expected = np.where(division.p_clean >= cfg.clean_threshold, "clean", "noisy")
        elif name == "gmm":
            expected = np.where(division.p_clean > cfg.clean_threshold, "clean", "noisy")
        elif name == "clip_score_threshold":
            expected = np.where(scores["similarity"] >= cfg.similarity_threshold, "clean", "noisy")
        elif name == "none":
            expected = np.full(N, "clean")
        else:
            continue
        np.testing.assert_array_equal(division.label, expected)


# ------------------------------------------------------------------ translations


def _view(loss: np.ndarray, rng: np.random.Generator, suffix: str = "") -> dict[str, np.ndarray]:
    belief = np.clip(1.0 - loss / 3.0, 0.0, 1.0)
    return {f"loss{suffix}": loss, f"belief{suffix}": belief,
            f"uncertainty{suffix}": rng.uniform(0.2, 0.6, len(loss)),
            f"top{suffix}": (loss < 1.5).astype(float)}


def _language_scores(n: int = 3000, seed: int = 0) -> tuple[dict[str, np.ndarray], NoiseFit]:
    """English pairs mostly clean (some broken), 25 % of the Portuguese translations broken,
    and a few pairs without a translation; with the fit of all of it."""
    rng = np.random.default_rng(seed)
    bad = rng.random(n) < 0.25
    wrong = rng.random(n) < 0.1
    scores = _view(np.where(wrong, rng.normal(2.2, 0.3, n), rng.normal(1.0, 0.25, n)).clip(0.05),
                   rng)
    loss_pt = np.where(bad, rng.normal(1.9, 0.35, n), rng.normal(1.1, 0.3, n)).clip(0.05)
    scores.update(_view(loss_pt, rng, "_pt"))
    scores["translation_margin_pt"] = np.where(bad, rng.normal(-0.07, 0.03, n),
                                               rng.normal(0.02, 0.02, n))
    cfg = PairsiftConfig()
    bounds = loss_range(cfg.train)
    hists = NoiseHistograms.of(bounds, cfg, scores["loss"], scores["uncertainty"],
                               rng.normal(2.2, 0.3, n).clip(0.05))
    view = language_view(scores, "pt")
    assert view is not None
    hists.languages["pt"] = NoiseHistograms.of(
        bounds, cfg, view["loss"], view["uncertainty"], rng.normal(2.2, 0.3, n).clip(0.05),
        view["consistency"], rng.normal(-0.08, 0.025, n), consistency_range=MARGIN_RANGE)
    fit = NoiseFit.fit(hists, cfg)
    for name in ("loss_pt", "uncertainty_pt", "translation_margin_pt"):
        scores[name][:20] = np.nan  # no translation
    return scores, fit


def test_drop_pair_names_the_translation_and_each_language_reason_its_label() -> None:
    scores, fit = _language_scores()
    kept = label_scores(scores, fit)
    whole = label_scores(scores, fit, OutputConfig(write_translations="drop_pair"))
    label_pt, reason_pt = whole["label_pt"], whole["reason_pt"]
    translated = label_pt != ""
    assert not translated[:20].any() and translated[20:].all()
    assert (reason_pt[~translated] == "").all()
    for i in np.flatnonzero(translated):
        code = reason_pt[i].partition(":")[0]
        assert Rule(code).label == label_pt[i], reason_pt[i]
        assert reason_pt[i].startswith(code + ": ") and reason_holds(reason_pt[i]), reason_pt[i]
        quoted = re.search(r"p_clean_pt (-?\d+\.\d+)", reason_pt[i])
        assert quoted, reason_pt[i]
        assert _same_to_printed_precision(quoted.group(1), whole["p_clean_pt"][i])
    assert np.array_equal(kept["reason_pt"], reason_pt)

    noisy_pt = label_pt == "noisy"
    dropped_for_it = noisy_pt & (kept["label"] != "noisy")
    assert dropped_for_it.sum() > 50 and (kept["label"] == "noisy").sum() > 50
    assert (whole["label"][noisy_pt] == "noisy").all()
    for i in np.flatnonzero(dropped_for_it):
        assert whole["reason"][i].startswith(f"{Rule.NOISY_TRANSLATION.value}: pt: "), i
        assert Rule.NOISY_TRANSLATION.label == whole["label"][i]
    # a pair the English view already drops keeps that reason; the rest are untouched
    rest = ~dropped_for_it
    assert np.array_equal(whole["reason"][rest], kept["reason"][rest])
    assert np.array_equal(whole["label"][rest], kept["label"][rest])
    assert not any(r.startswith(Rule.NOISY_TRANSLATION.value) for r in kept["reason"])
    for label, reason in zip(whole["label"], whole["reason"], strict=True):
        assert Rule(reason.partition(":")[0]).label == label, reason
        assert reason_holds(reason), reason
