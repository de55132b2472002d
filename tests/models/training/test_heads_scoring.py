"""Heads (identity init, save/load) and batch-order-independent scoring."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pairsift.models.config import TrainConfig
from pairsift.models.synthetic import make_pairs
from pairsift.models.training.heads import ProjectionHeads, load_heads, save_heads
from pairsift.models.training.scoring import (
    ScoringState,
    build_scoring_state,
    loss_range,
    score_batch,
)


def test_identity_heads_keep_direction_and_reject_mismatch() -> None:
    heads = ProjectionHeads(6, 6, 6, identity=True, target_text_dims={"pt": 6, "es": 4})
    x = torch.randn(3, 6)
    torch.testing.assert_close(heads.image(x), x / x.norm(dim=-1, keepdim=True))
    torch.testing.assert_close(heads.text(x, "pt"), x / x.norm(dim=-1, keepdim=True))
    assert heads.text(torch.randn(2, 4), "es").shape == (2, 6)
    with pytest.raises(ValueError):
        ProjectionHeads(6, 5, 6, identity=True)
    with pytest.raises(KeyError):
        heads.text(x, "de")


def test_heads_round_trip(tmp_path) -> None:
    torch.manual_seed(0)
    heads = ProjectionHeads(5, 4, 3, target_text_dims={"pt": 7})
    save_heads(heads, str(tmp_path / "heads"))
    loaded = load_heads(str(tmp_path / "heads"))
    x, t, p = torch.randn(4, 5), torch.randn(4, 4), torch.randn(4, 7)
    torch.testing.assert_close(loaded.image(x), heads.image(x), rtol=0, atol=0)
    torch.testing.assert_close(loaded.text(t), heads.text(t), rtol=0, atol=0)
    torch.testing.assert_close(loaded.text(p, "pt"), heads.text(p, "pt"), rtol=0, atol=0)
    assert loaded.config == heads.config


def test_centred_inputs_subtract_their_mean_and_survive_a_round_trip(tmp_path) -> None:
    torch.manual_seed(0)
    heads = ProjectionHeads(5, 4, 3, target_text_dims={"pt": 7}, centred=["text", "pt"])
    plain = ProjectionHeads(5, 4, 3, target_text_dims={"pt": 7})
    plain.load_state_dict({k: v for k, v in heads.state_dict().items()
                           if not k.startswith("centre_")})
    centre_text, centre_pt = torch.randn(4), torch.randn(7)
    heads.set_centre("text", centre_text)
    heads.set_centre("pt", centre_pt)
    x, t, p = torch.randn(6, 5), torch.randn(6, 4), torch.randn(6, 7)
    unit = torch.nn.functional.normalize
    torch.testing.assert_close(heads.image(x), plain.image(x))  # the image is not centred
    torch.testing.assert_close(heads.text(t), plain.text(unit(t - centre_text, dim=-1)))
    torch.testing.assert_close(heads.text(p, "pt"), plain.text(unit(p - centre_pt, dim=-1), "pt"))
    save_heads(heads, str(tmp_path / "heads"))
    loaded = load_heads(str(tmp_path / "heads"))
    assert loaded.centred == ["pt", "text"] and loaded.config == heads.config
    torch.testing.assert_close(loaded.text(t), heads.text(t), rtol=0, atol=0)
    torch.testing.assert_close(loaded.text(p, "pt"), heads.text(p, "pt"), rtol=0, atol=0)
    assert "centred" not in plain.config  # heads that centre nothing save as before
    assert not any(k.startswith("centre_") for k in plain.state_dict())
    with pytest.raises(ValueError, match="cannot centre"):
        ProjectionHeads(5, 4, 3, centred=["es"])
    with pytest.raises(KeyError, match="not centred"):
        plain.set_centre("image", torch.zeros(5))


@pytest.fixture(scope="module")
def state_and_data():
    pairs = make_pairs(300, 0.3, seed=0, target_langs=("pt",))
    torch.manual_seed(0)
    heads = ProjectionHeads(64, 48, 16, target_text_dims={"pt": 48})
    cfg = TrainConfig(num_negatives=32)
    return build_scoring_state(heads, pairs.data, cfg, seed=5), pairs.data, cfg


def test_scores_independent_of_batch_and_bounded(state_and_data) -> None:
    state, data, cfg = state_and_data
    full = score_batch(state, data.image, data.text, data.text_tgt, data.text_src_ml)
    for key in (
        "similarity",
        "loss",
        "belief",
        "uncertainty",
        "similarity_pt",
        "loss_pt",
        "belief_pt",
        "uncertainty_pt",
        "belief_dual",
        "uncertainty_dual",
        "translation_consistency",
        "translation_consistency_pt",
    ):
        assert full[key].shape == (300,) and np.all(np.isfinite(full[key])), key
    lo, hi = loss_range(cfg)
    assert full["loss"].min() >= lo and full["loss"].max() <= hi
    rev = np.arange(299, -1, -1)
    shuffled = score_batch(
        state,
        data.image[rev],
        data.text[rev],
        {k: v[rev] for k, v in data.text_tgt.items()},
        data.text_src_ml[rev],
    )
    half = score_batch(state, data.image[:1].astype(np.float16), data.text[:1].astype(np.float16))
    assert half["similarity"][0] == pytest.approx(full["similarity"][0], abs=1e-2)
    for key in full:
        np.testing.assert_array_equal(shuffled[key][rev], full[key])
    # single rows equal their row in the batch (scores are float32)
    for i in (0, 17, 299):
        one = score_batch(
            state,
            data.image[i : i + 1],
            data.text[i : i + 1],
            {"pt": data.text_tgt["pt"][i : i + 1]},
            data.text_src_ml[i : i + 1],
        )
        for key in full:
            assert one[key][0] == full[key][i], key


def test_bank_member_is_not_its_own_negative(state_and_data) -> None:
    state, data, _ = state_and_data
    member = state.bank_image[0:1], state.bank_text[0:1]
    s = score_batch(state, *member)
    # the identical bank row is masked, so the own caption can still be on top
    other = ScoringState(
        state.heads,
        state.bank_image[1:],
        state.bank_text[1:],
        tau=state.tau,
        margin=state.margin,
        temperature=state.temperature,
    )
    assert s["similarity"][0] == pytest.approx(score_batch(other, *member)["similarity"][0])


def test_state_round_trip(tmp_path, state_and_data) -> None:
    state, data, _ = state_and_data
    state.save(str(tmp_path / "scoring"))
    loaded = ScoringState.load(str(tmp_path / "scoring"))
    a = score_batch(state, data.image[:20], data.text[:20], {"pt": data.text_tgt["pt"][:20]})
    b = score_batch(loaded, data.image[:20], data.text[:20], {"pt": data.text_tgt["pt"][:20]})
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


def test_bad_input_is_rejected(state_and_data) -> None:
    state, data, _ = state_and_data
    bad = data.image[:2].copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        score_batch(state, bad, data.text[:2])
    with pytest.raises(ValueError):
        score_batch(state, data.image[:2], data.text[:3])
    with pytest.raises(KeyError):
        score_batch(state, data.image[:2], data.text[:2], {"de": data.text[:2]})


def test_untrusted_translation_leaves_english_opinion(state_and_data) -> None:
    state, data, _ = state_and_data
    src = -data.text_tgt["pt"][:50]  # English source pointing away from the target caption
    s = score_batch(state, data.image[:50], data.text[:50], {"pt": data.text_tgt["pt"][:50]}, src)
    untrusted = s["translation_consistency"] <= 0
    assert untrusted.any()
    np.testing.assert_allclose(s["belief_dual"][untrusted], s["belief"][untrusted], rtol=1e-5)
    np.testing.assert_allclose(
        s["uncertainty_dual"][untrusted], s["uncertainty"][untrusted], rtol=1e-5
    )
    trusted = score_batch(
        state,
        data.image[:50],
        data.text[:50],
        {"pt": data.text_tgt["pt"][:50]},
        data.text_tgt["pt"][:50],
    )  # source == target: full trust
    assert np.all(trusted["uncertainty_dual"] < trusted["uncertainty"])
