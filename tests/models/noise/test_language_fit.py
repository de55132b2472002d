"""One noise fit per target language: its view's loss fused with the translation margin."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from pairsift.models.config import OutputConfig, PairsiftConfig
from pairsift.models.noise.fit import NoiseFit, NoiseHistograms, language_view
from pairsift.models.noise.translation_margin import MARGIN_RANGE
from pairsift.models.training.scoring import loss_range
from pairsift.transforms.curate import label_scores


def _view(loss: np.ndarray, rng: np.random.Generator, suffix: str = "") -> dict[str, np.ndarray]:
    belief = np.clip(1.0 - loss / 3.0, 0.0, 1.0)
    return {f"loss{suffix}": loss, f"belief{suffix}": belief,
            f"uncertainty{suffix}": rng.uniform(0.2, 0.6, len(loss)),
            f"top{suffix}": (loss < 1.5).astype(float)}


def _scores(n: int = 3000, seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray, dict]:
    """English pairs all clean; 25 % of the Portuguese translations broken: a higher
    image–target loss, a much lower margin."""
    rng = np.random.default_rng(seed)
    bad = rng.random(n) < 0.25
    scores = _view(rng.normal(1.0, 0.25, n).clip(0.05), rng)
    loss_pt = np.where(bad, rng.normal(1.9, 0.35, n), rng.normal(1.1, 0.3, n)).clip(0.05)
    scores.update(_view(loss_pt, rng, "_pt"))
    scores["translation_margin_pt"] = np.where(bad, rng.normal(-0.07, 0.03, n), rng.normal(0.02, 0.02, n))
    nulls = {"loss": rng.normal(2.2, 0.3, n).clip(0.05), "margin": rng.normal(-0.08, 0.025, n),
             "english": rng.normal(2.2, 0.3, n).clip(0.05)}
    return scores, bad, nulls


def _fit(scores: dict[str, np.ndarray], nulls: dict, cfg: PairsiftConfig) -> NoiseFit:
    bounds = loss_range(cfg.train)
    hists = NoiseHistograms.of(bounds, cfg, scores["loss"], scores["uncertainty"], nulls["english"])
    view = language_view(scores, "pt")
    assert view is not None
    half = len(scores["loss"]) // 2  # two shards' partial histograms, summed
    parts = [NoiseHistograms.of(bounds, cfg, view["loss"][s], view["uncertainty"][s],
                                nulls["loss"][s], view["consistency"][s], nulls["margin"][s],
                                consistency_range=MARGIN_RANGE)
             for s in (slice(0, half), slice(half, None))]
    hists.languages = {"pt": parts[0]}
    hists = hists + NoiseHistograms.of(bounds, cfg, np.zeros(0), np.zeros(0))
    hists.languages["pt"] = parts[0] + parts[1]
    return NoiseFit.fit(NoiseHistograms.from_dict(hists.to_dict()), cfg)


def test_a_language_fit_ranks_broken_translations_and_round_trips() -> None:
    cfg = PairsiftConfig()
    scores, bad, nulls = _scores()
    fit = _fit(scores, nulls, cfg)
    assert set(fit.languages) == {"pt"}
    pt = fit.languages["pt"]
    assert pt.mixture is not None and pt.mixture.consistency is not None
    assert pt.mixture.consistency.lo == MARGIN_RANGE[0]
    assert 0.15 < pt.noise_ratio < 0.4  # the true share is 0.25
    views = fit.label_languages(scores)
    assert roc_auc_score(bad, -views["pt"]["p_clean"]) > 0.95
    noisy = views["pt"]["label"] == "noisy"
    assert bad[noisy].mean() > 0.85 and noisy[bad].mean() > 0.7
    again = NoiseFit.from_dict(fit.to_dict())
    assert np.array_equal(again.label_languages(scores)["pt"]["label"], views["pt"]["label"])


def test_faithful_translations_of_mismatched_pairs_are_not_dropped() -> None:
    """Half the pairs carry a wrong caption, with its faithful translation: the image–target
    loss is high for them, the margin is not; the translation's own label must not drop them."""
    cfg = PairsiftConfig()
    rng = np.random.default_rng(3)
    scores, _, nulls = _scores(n=3000, seed=3)
    wrong = rng.random(3000) < 0.5
    scores["loss_pt"] = np.where(wrong, rng.normal(2.1, 0.3, 3000), rng.normal(1.0, 0.25, 3000)).clip(0.05)
    scores["belief_pt"] = np.clip(1.0 - scores["loss_pt"] / 3.0, 0.0, 1.0)
    scores["translation_margin_pt"] = rng.normal(0.02, 0.02, 3000)
    fit = _fit(scores, nulls, cfg)
    labels = fit.label_languages(scores)["pt"]["label"]
    assert fit.languages["pt"].noise_ratio < 0.15  # the loss null alone would read ~0.5
    assert (labels == "noisy").mean() < 0.15


def test_pairs_without_a_translation_get_no_language_label() -> None:
    cfg = PairsiftConfig()
    scores, _, nulls = _scores(n=2000)
    fit = _fit(scores, nulls, cfg)
    scores = {k: v.copy() for k, v in scores.items()}
    for name in ("loss_pt", "uncertainty_pt", "translation_margin_pt"):
        scores[name][:10] = np.nan
    views = fit.label_languages(scores)["pt"]
    assert (views["label"][:10] == "").all() and np.isnan(views["p_clean"][:10]).all()
    assert (views["label"][10:] != "").all()


def test_label_scores_name_the_dropped_translations_and_drop_pairs_on_request() -> None:
    cfg = PairsiftConfig()
    scores, bad, nulls = _scores()
    fit = _fit(scores, nulls, cfg)
    labelled = label_scores(scores, fit)
    noisy_pt = labelled["label_pt"] == "noisy"
    assert noisy_pt.any() and (labelled["label"] != "noisy").mean() > 0.9  # English stays clean
    notes = labelled["translations_dropped"]
    assert all(n.startswith("pt: translation labelled noisy (p_clean_pt ") for n in notes[noisy_pt])
    assert (notes[~noisy_pt] == "").all()
    whole = label_scores(scores, fit, OutputConfig(write_translations="drop_pair"))
    assert (whole["label"][noisy_pt] == "noisy").all()
    assert np.array_equal(whole["label"][~noisy_pt], labelled["label"][~noisy_pt])
    everything = label_scores(scores, fit, OutputConfig(write_translations="all"))
    assert "translations_dropped" not in everything and "label_pt" in everything


def test_output_policy_reads_booleans_and_refuses_typos() -> None:
    assert OutputConfig(write_translations=True).write_translations == "drop_translation"
    assert OutputConfig(write_translations=False).write_translations == "none"
    with pytest.raises(ValueError, match="drop_translation, drop_pair, all, none"):
        OutputConfig(write_translations="drop")
    out = OutputConfig()
    assert out.writes("clean") and out.writes("hard") and out.writes(None) and not out.writes("noisy")
    assert OutputConfig(write_translations="all").writes("noisy")
    assert not OutputConfig(write_translations="none").writes("clean")
