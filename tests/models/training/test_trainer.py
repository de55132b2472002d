"""Robust training on synthetic embeddings with known noise."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from pairsift.models.config import PairsiftConfig
from pairsift.models.metrics import detection_auc, recall_at_k
from pairsift.models.synthetic import make_pairs
from pairsift.models.training.epoch_division import divide_pairs
from pairsift.models.training.heads import load_heads, save_heads
from pairsift.models.training.recipes import RECIPES
from pairsift.models.training.scoring import build_scoring_state, score_batch
from pairsift.models.training.trainer import input_centres, mean_cosine, train

METHODS = tuple(RECIPES)


def _cfg(loss: str, epochs: int = 12, **train) -> PairsiftConfig:
    cfg = PairsiftConfig()
    cfg.train.loss = loss
    cfg.train.epochs = epochs
    cfg.train.warmup_epochs = 2
    cfg.train.head_dim = 32
    cfg.train.batch_size = 128
    for key, value in train.items():
        setattr(cfg.train, key, value)
    return cfg


def _rsum(heads, data) -> float:
    with torch.no_grad():
        img = heads.image(torch.from_numpy(data.image)).numpy()
        txt = heads.text(torch.from_numpy(data.text)).numpy()
    return recall_at_k(img, txt)["rsum"]


@pytest.fixture(scope="module")
def noisy_half():
    torch.set_num_threads(1)
    return make_pairs(2000, 0.5, seed=0), make_pairs(1000, 0.0, seed=1)


def test_pairsift_detects_noise_and_beats_plain_contrastive(noisy_half) -> None:
    train_set, test_set = noisy_half
    robust = train(train_set.data, _cfg("pairsift"))
    plain = train(train_set.data, _cfg("contrastive"))
    assert robust.division is not None and plain.division is None
    auc = detection_auc(train_set.is_noisy, 1.0 - robust.division.p_clean)
    assert auc > 0.9
    kept = robust.division.kept
    assert np.mean(~train_set.is_noisy[kept]) > 0.9  # curated set is mostly clean
    assert _rsum(robust.heads, test_set.data) > _rsum(plain.heads, test_set.data) + 10
    epochs = [h["epoch"] for h in robust.history]
    assert epochs == list(range(12))
    # self-correction is off by default: no uncertainty memory is kept
    assert "noise_ratio" in robust.history[-1] and robust.memory is None


def test_deterministic_per_seed_and_round_trip(tmp_path) -> None:
    pairs = make_pairs(256, 0.4, seed=3, target_langs=("pt",))
    val = make_pairs(100, 0.0, seed=4, target_langs=("pt",))
    cfg = _cfg("pairsift", epochs=3, co_teaching=True)
    seen: list[dict] = []
    a = train(pairs.data, cfg, val=val.data, progress=seen.append)
    b = train(pairs.data, cfg, val=val.data)
    for key, value in a.heads.state_dict().items():
        torch.testing.assert_close(value, b.heads.state_dict()[key], rtol=0, atol=0)
    np.testing.assert_array_equal(a.division.label, b.division.label)
    assert len(seen) == len(a.history) and "val_rsum" in seen[0]
    cfg.seed = 1
    c = train(pairs.data, cfg, val=val.data)
    assert not torch.equal(c.heads.image_head.weight, a.heads.image_head.weight)
    # heads save/load gives identical scores
    save_heads(a.heads, str(tmp_path / "heads"))
    loaded = load_heads(str(tmp_path / "heads"))
    s1 = score_batch(
        build_scoring_state(a.heads, pairs.data, cfg.train, 0),
        pairs.data.image,
        pairs.data.text,
        pairs.data.text_tgt,
        pairs.data.text_src_ml,
    )
    s2 = score_batch(
        build_scoring_state(loaded, pairs.data, cfg.train, 0),
        pairs.data.image,
        pairs.data.text,
        pairs.data.text_tgt,
        pairs.data.text_src_ml,
    )
    for key in s1:
        np.testing.assert_array_equal(s1[key], s2[key])


@pytest.mark.parametrize("method", [m for m in METHODS if m != "pairsift"])
def test_every_method_trains(method: str) -> None:
    pairs = make_pairs(256, 0.3, seed=5, target_langs=("es",))
    result = train(pairs.data, _cfg(method, epochs=3))
    losses = [h["train_loss"] for h in result.history]
    assert all(np.isfinite(losses)) and len(losses) == 3
    assert (result.division is not None) == RECIPES[method].divides  # NCR and DECL divide


@pytest.fixture(scope="module")
def ablation_base():
    pairs = make_pairs(256, 0.4, seed=6, target_langs=("pt",))
    return pairs, train(pairs.data, _cfg("pairsift", epochs=4))


@pytest.mark.parametrize(
    "switch",
    [
        "division.refurbish",
        "trusted_margin",
        "division.fisher_soften",
        "mutual_learning",
        "division.use_uncertainty",
        "division.self_correction",
        "division.dual_view",
        "translation_trust",
    ],
)
def test_component_switches_change_training(switch: str, ablation_base) -> None:
    """Each switch, flipped from its default (on or off), changes the heads or the labels."""
    pairs, base = ablation_base
    cfg = _cfg("pairsift", epochs=4)
    section, _, name = switch.rpartition(".")
    target = getattr(cfg, section or "train")
    setattr(target, name, not getattr(target, name))
    flipped = train(pairs.data, cfg)
    assert np.isfinite(flipped.history[-1]["train_loss"])
    if name == "self_correction":  # acts only on pairs whose u fluctuates: check the wiring
        on, off = (flipped, base) if getattr(target, name) else (base, flipped)
        assert off.memory is None and on.memory is not None
        assert len(on.memory.history) == on.memory.window
        return
    changed_heads = not torch.equal(flipped.heads.image_head.weight, base.heads.image_head.weight)
    changed_labels = not np.array_equal(flipped.division.soft_label, base.division.soft_label)
    assert changed_heads or changed_labels


def test_translation_trust_flags_bad_translations() -> None:
    from pairsift.models.training.epoch_division import translation_trust

    pairs = make_pairs(600, 0.0, seed=8, target_langs=("pt",), translation_noise=0.3)
    result = train(pairs.data, _cfg("pairsift", epochs=4))
    scores = divide_pairs(result.heads, pairs.data, _cfg("pairsift"), 0).scores
    trust = translation_trust(scores, _cfg("pairsift"))["pt"]
    assert detection_auc(pairs.bad_translation, 1.0 - trust) > 0.95
    assert np.mean((trust < 0.5) == pairs.bad_translation) > 0.9


def test_bad_input() -> None:
    pairs = make_pairs(50, 0.2, seed=7)
    with pytest.raises(ValueError, match="train.loss"):
        train(pairs.data, _cfg("magic"))
    pairs.data.image[0, 0] = np.inf
    with pytest.raises(ValueError, match="NaN or inf"):
        train(pairs.data, _cfg("contrastive", epochs=1))


def test_pair_weights_steer_the_plain_losses(noisy_half) -> None:
    train_set, test_set = noisy_half
    cfg = _cfg("contrastive", epochs=6)
    plain = train(train_set.data, cfg)
    ones = train(train_set.data, cfg, weights=np.ones(len(train_set.data)))
    for a, b in zip(plain.heads.parameters(), ones.heads.parameters(), strict=True):
        torch.testing.assert_close(a, b)  # unit weights are no weights
    # weighing the known-noisy pairs down trains on the clean ones (they stay negatives)
    clean_weighted = train(train_set.data, cfg, weights=np.where(train_set.is_noisy, 0.01, 1.0))
    assert _rsum(clean_weighted.heads, test_set.data) > _rsum(plain.heads, test_set.data) + 10
    n = len(train_set.data)
    with pytest.raises(ValueError, match="shape"):
        train(train_set.data, cfg, weights=np.ones(n - 1))
    with pytest.raises(ValueError, match="non-negative"):
        train(train_set.data, cfg, weights=-np.ones(n))
    with pytest.raises(ValueError, match="plain losses"):
        train(train_set.data, _cfg("pairsift"), weights=np.ones(n))


def _in_a_cone(x: np.ndarray, offset: float, seed: int) -> np.ndarray:
    """Rows pushed towards one shared direction, as e5 embeds every caption."""
    common = np.random.default_rng(seed).normal(size=x.shape[1])
    shifted = x / np.linalg.norm(x, axis=1, keepdims=True) + offset * common / np.linalg.norm(common)
    return (shifted / np.linalg.norm(shifted, axis=1, keepdims=True)).astype(np.float32)


def test_mean_cosine_and_which_inputs_are_centred() -> None:
    rng = np.random.default_rng(0)
    spread = rng.normal(size=(500, 64))
    cone = _in_a_cone(spread, 4.0, seed=1)
    assert abs(mean_cosine(spread)) < 0.02 and mean_cosine(cone) > 0.9
    assert mean_cosine(spread[:1]) == 0.0
    unit = cone / np.linalg.norm(cone, axis=1, keepdims=True)
    pairs = unit @ unit.T
    exact = (pairs.sum() - np.trace(pairs)) / (len(unit) * (len(unit) - 1))
    assert mean_cosine(cone) == pytest.approx(exact)
    data = dataclasses.replace(make_pairs(200, 0.0, seed=0, target_langs=("pt",)).data)
    data.text = _in_a_cone(data.text, 4.0, seed=2)
    t = _cfg("pairsift").train
    centres = input_centres(data, t)
    assert list(centres) == ["text"]
    np.testing.assert_allclose(centres["text"], data.text.mean(axis=0), rtol=1e-5)
    assert input_centres(data, t, identity_init=True) == {}  # aligned towers keep their geometry
    t.centre_inputs = "always"
    assert list(input_centres(data, t)) == ["image", "pt", "text"]
    t.centre_inputs = "never"
    assert input_centres(data, t) == {}
    t.centre_inputs = "sometimes"
    with pytest.raises(ValueError, match="centre_inputs"):
        input_centres(data, t)


def test_centring_an_anisotropic_tower_restores_the_division() -> None:
    """Captions squeezed into a cone (mean cosine 0.94): uncentred heads keep a fraction of the
    clean pairs; centred ones divide nearly as well as on the spread-out captions."""
    pairs = make_pairs(600, 0.5, seed=0)
    squeezed = dataclasses.replace(pairs.data, text=_in_a_cone(pairs.data.text, 4.0, seed=0))
    results = {}
    for mode in ("never", "auto"):
        division = train(squeezed, _cfg("pairsift", epochs=6, centre_inputs=mode)).division
        results[mode] = (detection_auc(pairs.is_noisy, 1.0 - division.p_clean),
                         int(division.kept.sum()))
    reference = train(pairs.data, _cfg("pairsift", epochs=6)).division
    assert results["never"][1] < 0.6 * results["auto"][1]  # 143 against 268 kept
    assert results["auto"][0] > results["never"][0] + 0.04  # AUC 0.964 against 0.884
    assert results["auto"][0] == pytest.approx(
        detection_auc(pairs.is_noisy, 1.0 - reference.p_clean), abs=0.02)  # 0.964 against 0.976
