"""Division on constructed scores; self-correction; baseline methods."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pairsift.models.config import DivisionConfig, MixtureConfig
from pairsift.models.noise.division import (
    UncertaintyMemory,
    divide,
    relative_threshold,
    share_cut,
    threshold_from_histogram,
)
from pairsift.models.noise.evidential import combine, opinion
from pairsift.models.noise.histogram import histogram, histogram2d
from pairsift.models.noise.mixture import BetaMixture, fit_raw

# The constructed cases below put u on both sides of an absolute ½ on purpose.
ABSOLUTE = {"uncertainty_quantile": None}


def _scores(sims: np.ndarray, loss: np.ndarray, tau: float = 0.1) -> dict[str, np.ndarray]:
    op = opinion(torch.from_numpy(sims), tau)
    neg = op.belief[:, 1:].amax(1)
    return {
        "similarity": sims[:, 0],
        "loss": loss,
        "belief": op.belief[:, 0].numpy(),
        "uncertainty": op.uncertainty.numpy(),
        "alpha_self": op.alpha[:, 0].numpy(),
        "alpha_total": op.strength.numpy(),
        "match_prob": op.expected[:, 0].numpy(),
        "belief_neg_max": neg.numpy(),
        "top": (op.belief[:, 0] >= neg).double().numpy(),
    }


@pytest.fixture(scope="module")
def mixture():
    rng = np.random.default_rng(0)
    return fit_raw(np.concatenate([rng.beta(2, 12, 4000), rng.beta(12, 2, 4000)]))


def test_clear_clean_clear_noisy_and_uncertain(mixture) -> None:
    negs = np.full(8, -0.3)
    sims = np.array(
        [
            [0.9, *negs],  # strong own evidence: determined, top -> clean
            [-0.3, 0.9, *negs[1:]],  # another caption holds the evidence -> noisy
            [-0.9, *np.full(8, -0.9)],  # almost no evidence at all -> uncertain -> hard
        ]
    )
    loss = np.array([0.05, 0.9, 0.3])
    div = divide(_scores(sims, loss), mixture, DivisionConfig(**ABSOLUTE))
    assert div.label.tolist() == ["clean", "noisy", "hard"]
    assert div.uncertainty[2] > 0.5 > div.uncertainty[0]
    s = _scores(sims, loss)
    assert div.soft_label[2] == pytest.approx(s["belief"][2])  # UCPM: hard keeps b_self
    assert div.soft_label[0] > 0.75 and div.soft_label[1] < 0.5
    sharp = divide(_scores(sims, loss), mixture, DivisionConfig(fisher_soften=False, **ABSOLUTE))
    # a well-determined pair keeps its label (the Fisher weight reaches 1); the noisy one, whose
    # evidence backs a mismatch, stays on its side of 1/2
    assert sharp.soft_label[0] > 0.99 and div.soft_label[0] == pytest.approx(sharp.soft_label[0], abs=1e-3)
    assert div.soft_label[1] < 0.5 and sharp.soft_label[1] < 0.5
    assert div.counts() == {"clean": 1, "hard": 1, "noisy": 1}


def test_mixture_must_agree_and_sure_noise_is_not_hard(mixture) -> None:
    sims = np.array([[0.9, *np.full(8, -0.3)], [-0.9, *np.full(8, -0.9)]])
    loss = np.array([0.95, 0.97])  # the mixture is sure both are noise
    div = divide(_scores(sims, loss), mixture, DivisionConfig(**ABSOLUTE))
    assert div.label.tolist() == ["hard", "noisy"]
    off = divide(
        _scores(sims, loss), mixture, DivisionConfig(mixture_agrees=False, noisy_posterior=0.0, **ABSOLUTE)
    )
    assert off.label.tolist() == ["clean", "hard"]


def test_soft_label_switches(mixture) -> None:
    sims = np.array([[0.3, *np.full(8, 0.1)], [0.1, 0.35, *np.full(7, 0.0)]])
    s = _scores(sims, np.array([0.2, 0.6]))
    plain = divide(s, mixture, DivisionConfig(method="bmm", refurbish=False, fisher_soften=False))
    np.testing.assert_allclose(plain.soft_label, plain.p_clean)
    refurb = divide(s, mixture, DivisionConfig(method="bmm", refurbish=True))
    expected = plain.p_clean + (1 - plain.p_clean) * s["match_prob"]
    np.testing.assert_allclose(refurb.soft_label, expected)
    assert DivisionConfig().refurbish is False and DivisionConfig().fisher_soften is False
    soft = divide(s, mixture, DivisionConfig(method="bmm", refurbish=True, fisher_soften=True))
    assert np.all(np.abs(soft.soft_label - 0.5) <= np.abs(refurb.soft_label - 0.5) + 1e-12)


def test_dual_view_used_when_present(mixture) -> None:
    en = np.array([[0.2, 0.25, *np.full(7, -0.5)]])  # English view: a negative wins narrowly
    tgt = np.array([[0.9, -0.2, *np.full(7, -0.5)]])  # target view: clearly the own caption
    s = _scores(en, np.array([0.1]))
    combined = combine(opinion(torch.from_numpy(en), 0.1), opinion(torch.from_numpy(tgt), 0.1))
    neg = combined.belief[:, 1:].amax(1)
    s.update(
        {
            "belief_dual": combined.belief[:, 0].numpy(),
            "uncertainty_dual": combined.uncertainty.numpy(),
            "alpha_self_dual": combined.alpha[:, 0].numpy(),
            "alpha_total_dual": combined.strength.numpy(),
            "match_prob_dual": combined.expected[:, 0].numpy(),
            "belief_neg_max_dual": neg.numpy(),
            "top_dual": (combined.belief[:, 0] >= neg).double().numpy(),
        }
    )
    assert divide(s, mixture, DivisionConfig(dual_view=False, **ABSOLUTE)).label[0] == "hard"
    assert divide(s, mixture, DivisionConfig(dual_view=True, **ABSOLUTE)).label[0] == "clean"


def test_self_correction_changes_fluctuating_pair_only(mixture) -> None:
    cfg = DivisionConfig(uncertainty_threshold=0.5, fluctuation_threshold=0.1, **ABSOLUTE)
    base = _scores(
        np.array([[0.9, *np.full(8, -0.3)], [0.9, *np.full(8, -0.3)]]), np.array([0.05, 0.05])
    )
    stable_only = divide(dict(base, uncertainty=np.array([0.61, 0.3])), mixture, cfg)
    assert stable_only.label.tolist() == ["hard", "clean"]
    no_memory = divide(dict(base, uncertainty=np.array([0.61, 0.75])), mixture, cfg)
    assert no_memory.label.tolist() == ["hard", "hard"]
    memory2 = UncertaintyMemory(2, window=3, fluctuation_threshold=0.1)
    for u in [(0.62, 0.3), (0.6, 0.3), (0.61, 0.75)]:
        s = dict(base, uncertainty=np.array(u))
        div = divide(s, mixture, cfg, uncertainty=memory2.update(s["uncertainty"]))
    assert memory2.fluctuating().tolist() == [False, True]
    assert div.label.tolist() == ["hard", "clean"]  # stable pair unchanged, fluctuating fixed
    assert div.uncertainty[0] == pytest.approx(0.61)
    assert div.uncertainty[1] == pytest.approx(np.mean([0.3, 0.3, 0.75]))
    restored = UncertaintyMemory.from_dict(memory2.to_dict())
    np.testing.assert_allclose(restored.corrected(), memory2.corrected())
    with pytest.raises(ValueError):
        memory2.update(np.zeros(3))


def test_baselines() -> None:
    rng = np.random.default_rng(1)
    n = 400
    noisy = np.arange(n) >= 300
    loss = np.where(noisy, rng.normal(3.0, 0.3, n), rng.normal(0.5, 0.3, n))
    sim = -loss
    scores = {"loss": loss, "similarity": sim, "uncertainty": np.full(n, 0.3)}
    gmm = divide(scores, None, DivisionConfig(method="gmm"))
    assert np.mean((gmm.label == "noisy") == noisy) > 0.95
    clip = divide(scores, None, DivisionConfig(method="clip_score", keep_fraction=0.75))
    assert int((clip.label == "clean").sum()) == 300
    assert np.mean(clip.kept == ~noisy) > 0.95
    cut = divide(scores, None, DivisionConfig(method="clip_score", similarity_threshold=-1.75))
    np.testing.assert_array_equal(cut.kept, sim >= -1.75)
    assert divide(scores, None, DivisionConfig(method="none")).counts()["clean"] == n
    with pytest.raises(ValueError):
        divide(scores, None, DivisionConfig(method="nope"))
    with pytest.raises(KeyError):
        divide({"loss": loss, "uncertainty": np.ones(n)}, None, DivisionConfig(method="pairsift"))


def _trained_like(n: int = 400, seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Scores as trained heads give them: negatives pushed below 0, so u > ½ for every pair."""
    rng = np.random.default_rng(seed)
    noisy = np.arange(n) >= n // 2
    own = np.where(noisy, rng.normal(-0.2, 0.05, n), rng.uniform(0.05, 0.3, n))
    sims = np.concatenate([own[:, None], rng.normal(-0.35, 0.05, (n, 64))], axis=1)
    loss = np.where(noisy, rng.beta(12, 2, n), rng.beta(2, 12, n))
    return _scores(sims, loss), noisy


def test_relative_threshold_makes_the_three_way_division_fire(mixture) -> None:
    scores, noisy = _trained_like()
    assert scores["uncertainty"].min() > 0.5  # an absolute ½ determines no pair at all
    absolute = divide(scores, mixture, DivisionConfig(**ABSOLUTE))
    assert absolute.counts()["clean"] == 0
    div = divide(scores, mixture, DivisionConfig())
    kept_by_mixture = div.p_clean >= 0.5
    assert div.uncertainty_threshold == pytest.approx(
        np.quantile(scores["uncertainty"][kept_by_mixture], 0.5)
    )
    counts = div.counts()
    assert counts["clean"] > 0.3 * (~noisy).sum() and counts["hard"] > 0.3 * (~noisy).sum()
    assert not div.label[noisy].tolist().count("clean")  # no noisy pair is called clean
    # clean pairs are the more certain half of the kept ones
    clean_u = div.uncertainty[div.label == "clean"]
    assert clean_u.max() < div.uncertainty_threshold <= div.uncertainty[div.label == "hard"].max()
    fixed = divide(scores, mixture, DivisionConfig(), uncertainty_threshold=0.0)
    assert fixed.counts()["clean"] == 0 and fixed.uncertainty_threshold == 0.0
    stricter = divide(scores, mixture, DivisionConfig(uncertainty_quantile=0.2))
    assert stricter.counts()["clean"] < counts["clean"]


def test_threshold_from_joint_histogram_matches_the_exact_quantile(mixture) -> None:
    scores, _ = _trained_like(2000, seed=3)
    cfg = DivisionConfig()
    p_clean = mixture.posterior_clean(scores["loss"])
    exact = relative_threshold(scores["uncertainty"], p_clean, cfg)
    lo, hi = float(mixture.x_min), float(mixture.x_max)
    counts = histogram2d(scores["loss"], scores["uncertainty"], (lo, hi), (0.0, 1.0), (256, 1000))
    assert counts.sum() == 2000
    binned = threshold_from_histogram(counts, lo, hi, mixture, cfg)
    assert abs(binned - exact) < 0.01
    assert threshold_from_histogram(counts, lo, hi, mixture, DivisionConfig(**ABSOLUTE)) == 0.5
    with pytest.raises(ValueError, match="uncertainty_quantile"):
        relative_threshold(scores["uncertainty"], p_clean, DivisionConfig(uncertainty_quantile=1.5))


def _overlapping(seed: int, n: int = 3000) -> tuple[dict[str, np.ndarray], np.ndarray, BetaMixture]:
    """Half noise; clean and noisy losses overlap as on tuxpaint (shapes: test_null_model)."""
    rng = np.random.default_rng(seed)
    noisy = np.arange(n) < n // 2
    loss = np.where(noisy, rng.beta(12, 4.7, n), np.clip(0.82 - rng.gamma(2.0, 0.1, n), 0, 1))
    null = rng.beta(12, 4.7, n)
    cfg = MixtureConfig()
    mixture = BetaMixture.fit_histogram(
        histogram(loss, 0, 1, cfg.bins), 0.0, 1.0, cfg, histogram(null, 0, 1, cfg.bins)
    )
    sims = np.concatenate([rng.uniform(-0.2, 0.3, (n, 1)), rng.normal(-0.35, 0.05, (n, 16))], 1)
    return _scores(sims, loss), noisy, mixture


@pytest.mark.parametrize("seed", [0, 1])
def test_noise_share_caps_what_the_bayes_cut_keeps(seed: int) -> None:
    scores, noisy, mixture = _overlapping(seed)
    cut = share_cut(mixture, DivisionConfig())
    assert cut is not None and cut == mixture.keep_loss()
    within = scores["loss"] <= cut
    bayes = divide(scores, mixture, DivisionConfig(keep_rule="posterior"))
    count = divide(scores, mixture, DivisionConfig(keep_rule="noise_share"))
    both = divide(scores, mixture, DivisionConfig(keep_rule="both"))
    # the count keeps exactly the pairs within the estimated clean share, ...
    np.testing.assert_array_equal(count.kept, within)
    assert abs(count.kept.mean() - (1.0 - mixture.noise_ratio)) < 0.02
    # ... "both" keeps what both rules keep, and the opinion still sorts kept pairs
    np.testing.assert_array_equal(both.kept, bayes.kept & within)
    assert both.counts()["clean"] > 0 and both.counts()["hard"] > 0
    # where the losses overlap this much the Bayes cut keeps well over the clean share
    assert bayes.kept.mean() > (1.0 - mixture.noise_ratio) + 0.15
    precision = {name: float((~noisy[d.kept]).mean()) for name, d in
                 (("bayes", bayes), ("count", count), ("both", both))}
    assert precision["count"] > precision["bayes"] + 0.05
    assert precision["both"] >= precision["count"] - 0.01


def test_without_a_clean_share_the_posterior_rule_decides() -> None:
    scores, _, mixture = _overlapping(2)
    bayes = divide(scores, mixture, DivisionConfig(keep_rule="posterior"))
    assert share_cut(None, DivisionConfig()) is None
    mixture.null.noise_ratio = 1.0  # every pair read as noise: no share to count
    assert share_cut(mixture, DivisionConfig()) is None
    for rule in ("both", "noise_share"):
        np.testing.assert_array_equal(
            divide(scores, mixture, DivisionConfig(keep_rule=rule)).kept, bayes.kept
        )
    with pytest.raises(ValueError, match="keep_rule"):
        divide(scores, mixture, DivisionConfig(keep_rule="count"))
