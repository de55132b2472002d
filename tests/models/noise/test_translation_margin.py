"""The translation margin: faithful translations above their neighbourhoods, broken ones not."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from pairsift.models.noise.null import storey_lower
from pairsift.models.noise.translation_margin import TranslationIndex, unit


def _corpus(n: int = 400, dim: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """English captions with a shared language offset (as multilingual towers have), their
    translations near them, and a third of the translations replaced by another's."""
    rng = np.random.default_rng(seed)
    offset = rng.normal(size=dim) * 2.0
    source = rng.normal(size=(n, dim)) + offset
    target = source + rng.normal(size=(n, dim)) * 0.6 + offset * 0.5
    bad = np.zeros(n, dtype=bool)
    bad[rng.choice(n, n // 3, replace=False)] = True
    swapped = np.flatnonzero(bad)
    target[swapped] = target[np.roll(swapped, 1)]
    return source.astype(np.float32), target.astype(np.float32), bad


def test_replaced_translations_have_the_lowest_margins() -> None:
    source, target, bad = _corpus()
    keys = [f"k{i}" for i in range(len(source))]
    index = TranslationIndex.build(source, target, keys)
    margin = index.margin(source, target, index.rows_of(keys))
    assert roc_auc_score(bad, -margin) > 0.97
    assert np.nanmean(margin[~bad]) > 0 > np.nanmean(margin[bad])


def test_the_own_anchor_and_identical_captions_are_no_rivals() -> None:
    source, target, _ = _corpus(n=50)
    keys = [f"k{i}" for i in range(50)]
    index = TranslationIndex.build(source, target, keys)
    own = index.margin(source[:5], target[:5], index.rows_of(keys[:5]))
    # the own anchor goes by its row, and as a twin (the same vectors) when no row is given
    unexcluded = index.margin(source[:5], target[:5])
    assert np.all(own == unexcluded)  # identical vectors are dropped as twins either way
    twins = TranslationIndex.build(np.vstack([source, source[:1]]), np.vstack([target, target[:1]]),
                                   [*keys, "twin"])
    assert twins.margin(source[:1], target[:1], twins.rows_of(["k0"]))[0] == pytest.approx(own[0])


def test_inverted_file_search_is_close_to_exact_and_survives_save(tmp_path) -> None:
    source, target, bad = _corpus(n=3000, seed=1)
    keys = [f"k{i}" for i in range(3000)]
    exact = TranslationIndex.build(source, target, keys)
    approx = TranslationIndex.build(source, target, keys, probes=8, seed=3)
    assert approx.probes == 8 and approx.source_centroids is not None
    m_exact = exact.margin(source, target, exact.rows_of(keys))
    m_approx = approx.margin(source, target, approx.rows_of(keys))
    assert abs(roc_auc_score(bad, -m_exact) - roc_auc_score(bad, -m_approx)) < 0.005
    approx.save(str(tmp_path / "pt"))
    loaded = TranslationIndex.load(str(tmp_path / "pt"))
    assert np.array_equal(loaded.margin(source[:100], target[:100], loaded.rows_of(keys[:100])),
                          m_approx[:100])


def test_a_single_anchor_leaves_no_rival() -> None:
    index = TranslationIndex.build(np.ones((1, 4)), np.ones((1, 4)), ["a"])
    assert np.isnan(index.margin(np.ones((2, 4)), np.ones((2, 4)))).all()
    assert unit(np.zeros((1, 3))).shape == (1, 3)


def test_storey_counts_noise_in_the_low_tail() -> None:
    rng = np.random.default_rng(0)
    edges = np.linspace(-0.5, 0.5, 101)
    null = rng.normal(-0.2, 0.05, 20000)
    observed = np.concatenate([rng.normal(0.1, 0.05, 7000), rng.normal(-0.2, 0.05, 3000)])
    counts = np.histogram(observed, edges)[0]
    null_counts = np.histogram(null, edges)[0]
    assert storey_lower(counts, null_counts, 0.75) == pytest.approx(0.3, abs=0.03)
    assert storey_lower(np.zeros(100), null_counts, 0.75) == 0.0
