"""Cross-fitted division: fold heads score only pairs they never trained on."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pairsift.models.config import PairsiftConfig
from pairsift.models.noise.null import with_swapped_captions
from pairsift.models.synthetic import make_pairs
from pairsift.models.training.epoch_division import crossfit_scorer, crossfit_scores
from pairsift.models.training.heads import ProjectionHeads
from pairsift.models.training.scoring import (
    ScoringState,
    build_scoring_state,
    fold_of_keys,
    score_batch,
)
from pairsift.models.training.trainer import train


def _cfg(epochs: int = 6, **train) -> PairsiftConfig:
    cfg = PairsiftConfig()
    cfg.train.epochs = epochs
    cfg.train.warmup_epochs = 2
    cfg.train.head_dim = 32
    cfg.train.batch_size = 32
    cfg.train.num_negatives = 32
    for key, value in train.items():
        setattr(cfg.train, key, value)
    return cfg


@pytest.fixture(scope="module")
def all_noise():
    """Nearly every caption shuffled: little to learn, so a low loss is mostly memorisation."""
    torch.set_num_threads(1)
    pairs = make_pairs(160, 0.95, seed=2)
    cfg = _cfg(epochs=30, division_folds=2, lr=1e-2)
    return pairs, cfg, train(pairs.data, cfg)


def test_fold_heads_cannot_memorise_what_they_score(all_noise) -> None:
    pairs, cfg, result = all_noise
    assert len(result.fold_heads) == 2 and result.folds is not None
    assert sorted(np.bincount(result.folds).tolist()) == [80, 80]
    in_sample = build_scoring_state(result.heads, pairs.data, cfg.train, 0)
    memorised = score_batch(in_sample, pairs.data.image, pairs.data.text)["loss"]
    held_out = crossfit_scores(result.fold_heads, result.folds, pairs.data, cfg, 0)["loss"]
    # the main heads trained on every pair and memorised the shuffled captions; the fold
    # heads never saw the pairs they score, so those keep the loss of a random match
    assert held_out.mean() > memorised.mean() + 0.5
    # and each fold's own training rows are memorised by that fold's heads
    for f, heads in enumerate(result.fold_heads):
        state = build_scoring_state(heads, pairs.data, cfg.train, 0)
        own = score_batch(state, pairs.data.image, pairs.data.text)["loss"]
        assert own[result.folds != f].mean() + 0.5 < own[result.folds == f].mean()


def test_crossfit_division_drives_the_robust_phase(all_noise) -> None:
    _, _, result = all_noise
    assert result.division is not None
    assert any("noise_ratio" in h for h in result.history)


def test_large_sets_divide_in_sample() -> None:
    pairs = make_pairs(120, 0.3, seed=1)
    result = train(pairs.data, _cfg(epochs=3, division_folds=4, crossfit_max_pairs=100))
    assert result.fold_heads == [] and result.folds is None
    other = train(pairs.data, _cfg(epochs=3, division_folds=4, loss="ncr"))
    assert other.fold_heads == []  # cross-fitting belongs to the pairsift recipe


def test_given_folds_are_used_and_checked() -> None:
    pairs = make_pairs(80, 0.3, seed=1)
    folds = np.arange(80) % 2
    result = train(pairs.data, _cfg(epochs=3, division_folds=2), folds=folds)
    np.testing.assert_array_equal(result.folds, folds)
    with pytest.raises(ValueError, match="entries"):
        train(pairs.data, _cfg(epochs=3, division_folds=2), folds=folds[:10])
    with pytest.raises(ValueError, match="fold ids"):
        train(pairs.data, _cfg(epochs=3, division_folds=2), folds=folds + 1)


def test_fold_of_keys_is_stable_and_balanced() -> None:
    keys = [f"{i:06d}" for i in range(4000)]
    folds = fold_of_keys(keys, 4)
    np.testing.assert_array_equal(folds, fold_of_keys(list(keys), 4))
    assert folds.min() == 0 and folds.max() == 3
    assert np.all(np.abs(np.bincount(folds) - 1000) < 120)
    assert fold_of_keys(keys[:5], 1).tolist() == [0] * 5
    with pytest.raises(ValueError):
        fold_of_keys(keys, 0)


def test_state_with_fold_heads_scores_by_fold_and_round_trips(tmp_path) -> None:
    pairs = make_pairs(60, 0.3, seed=4)
    torch.manual_seed(0)
    heads = [ProjectionHeads(64, 48, 16) for _ in range(3)]
    state = build_scoring_state(heads[0], pairs.data, PairsiftConfig().train, 1)
    state.fold_heads = heads[1:]
    folds = np.arange(60) % 2
    mixed = score_batch(state, pairs.data.image, pairs.data.text, folds=folds)
    for f in (0, 1):
        alone = score_batch(state.for_fold(f), pairs.data.image, pairs.data.text)
        np.testing.assert_allclose(mixed["loss"][folds == f], alone["loss"][folds == f])
    main = score_batch(state, pairs.data.image, pairs.data.text)
    assert not np.allclose(main["loss"], mixed["loss"])  # no folds: the main heads score
    state.save(str(tmp_path / "s"))
    loaded = ScoringState.load(str(tmp_path / "s"))
    assert len(loaded.fold_heads) == 2
    again = score_batch(loaded, pairs.data.image, pairs.data.text, folds=folds)
    np.testing.assert_allclose(again["loss"], mixed["loss"], rtol=1e-6)
    with pytest.raises(ValueError, match="one fold id per row"):
        score_batch(state, pairs.data.image, pairs.data.text, folds=folds[:5])
    with pytest.raises(ValueError, match="fold ids"):
        score_batch(state, pairs.data.image, pairs.data.text, folds=folds + 5)


def test_swapped_pairs_are_scored_against_the_real_pairs_bank() -> None:
    """The null's rows must meet the same negatives as the pairs they are compared with."""
    pairs = make_pairs(60, 0.3, seed=5)
    torch.manual_seed(0)
    heads = [ProjectionHeads(64, 48, 16) for _ in range(2)]
    folds = np.arange(60) % 2
    cfg = PairsiftConfig()
    cfg.train.num_negatives = 16  # a bank of some pairs, not all of them
    score = crossfit_scorer(heads, folds, pairs.data, cfg, seed=3)
    np.testing.assert_allclose(
        score(pairs.data)["loss"], crossfit_scores(heads, folds, pairs.data, cfg, 3)["loss"]
    )
    swapped = with_swapped_captions(pairs.data, seed=4)
    state = build_scoring_state(heads[0], pairs.data, cfg.train, 3)  # bank of the real pairs
    state.fold_heads = heads
    expected = score_batch(state, swapped.image, swapped.text, folds=folds)["loss"]
    np.testing.assert_allclose(score(swapped)["loss"], expected, rtol=1e-6)
    # a bank drawn from the swapped rows (other captions for the same images) differs
    other_bank = crossfit_scores(heads, folds, swapped, cfg, 3)["loss"]
    assert not np.allclose(other_bank, expected)
