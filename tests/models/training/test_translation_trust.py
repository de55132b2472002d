"""Translation trust: NRF consistency view, image view, Dempster–Shafer, division."""

from __future__ import annotations

import numpy as np
import pytest

from pairsift.models.metrics import detection_auc
from pairsift.models.training.heads import ProjectionHeads
from pairsift.models.training.translation_trust import (
    divide_translations,
    image_view_opinion,
    standardise,
    translation_similarities,
    trust_scores,
)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _views(n: int = 40, dim: int = 16, seed: int = 0) -> tuple[np.ndarray, ...]:
    """English sources, faithful targets near them, and corrupted targets (unrelated)."""
    rng = np.random.default_rng(seed)
    src = _unit(rng.normal(size=(n, dim)))
    faithful = _unit(src + 0.1 * rng.normal(size=(n, dim)))
    corrupted = _unit(rng.normal(size=(n, dim)))
    return src, faithful, corrupted


def test_corrupted_translation_ranks_above_faithful_one() -> None:
    src, faithful, corrupted = _views()
    noisy = np.arange(40) % 3 == 0
    tgt = np.where(noisy[:, None], corrupted, faithful)
    bank = faithful[20:36]
    scores = trust_scores(src, tgt, bank)
    assert detection_auc(noisy, scores.noise_score) == 1.0
    assert detection_auc(noisy, -scores.consistency) == 1.0
    assert np.all(scores.noise_score[noisy].min() > scores.noise_score[~noisy].max())


def test_dual_view_combines_image_view_over_the_same_classes() -> None:
    src, faithful, corrupted = _views(seed=1)
    noisy = np.arange(40) % 4 == 1
    tgt = np.where(noisy[:, None], corrupted, faithful)
    image = faithful  # images aligned with the faithful captions under identity heads
    heads = ProjectionHeads(16, 16, 16, identity=True, target_text_dims={"pt": 16})
    view = image_view_opinion(heads, image, tgt, faithful[:10], "pt")
    assert view.num_classes == 11
    single = trust_scores(src, tgt, faithful[:10])
    dual = trust_scores(src, tgt, faithful[:10], view)
    # two agreeing views: more belief in faithful captions, less uncertainty overall
    assert np.all(dual.dual_uncertainty < single.translation_uncertainty)
    assert detection_auc(noisy, dual.noise_score) == 1.0
    with pytest.raises(ValueError, match="classes"):
        trust_scores(src, tgt, faithful[:5], view)


def test_identical_bank_caption_is_no_rival() -> None:
    src, faithful, _ = _views(n=6)
    sims = translation_similarities(src, faithful, faithful[:3])
    assert sims.shape == (6, 4)
    assert float(sims[0, 1]) == -1.0 and float(sims[1, 2]) == -1.0
    assert float(sims[4, 1]) > -1.0
    z = standardise(sims)
    assert np.isfinite(z.numpy()).all()


def test_bad_input_gets_a_clear_error() -> None:
    src, faithful, _ = _views(n=4)
    with pytest.raises(ValueError, match="differ"):
        trust_scores(src, faithful[:3], faithful)
    broken = faithful.copy()
    broken[0, 0] = np.nan
    with pytest.raises(ValueError, match="finite"):
        trust_scores(src, broken, faithful)


def test_division_separates_two_modes_without_ground_truth() -> None:
    rng = np.random.default_rng(0)
    score = np.concatenate([rng.normal(0.1, 0.02, 70), rng.normal(0.8, 0.05, 30)])
    trusted = divide_translations(score, seed=0)
    assert trusted[:70].all() and not trusted[70:].any()
    assert divide_translations(np.zeros(5)).all()
    assert np.array_equal(divide_translations(score, 3), divide_translations(score, 3))
