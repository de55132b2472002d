"""Noise protocols: rates, derangements without self- or same-caption matches, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from pairsift.pipeline.datasets.noise import (
    corrupt_text,
    derange,
    make_plan,
    replace_content_word,
)


def _groups(n: int, distinct: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(distinct, size=n).astype(np.int64)


@pytest.mark.parametrize("rate", [0.0, 0.2, 0.5, 0.8, 1.0])
@pytest.mark.parametrize("mode", ["caption", "image"])
def test_shuffle_rate_and_no_self_or_same_caption_match(rate: float, mode: str) -> None:
    groups = _groups(1000, 40)
    train = np.arange(100, 1000)
    plan = make_plan(groups, train, mode, rate, seed=3)
    noisy = np.flatnonzero(plan.noisy)
    assert noisy.size == round(rate * train.size)
    assert not plan.noisy[:100].any()  # test split untouched
    partners = plan.partner[noisy]
    assert (partners != noisy).all()
    assert (groups[partners] != groups[noisy]).all()
    assert (plan.partner[~plan.noisy] == -1).all()
    rows = plan.text_rows() if mode == "caption" else plan.image_rows()
    other = plan.image_rows() if mode == "caption" else plan.text_rows()
    assert (groups[rows] != groups[other])[noisy].all()
    assert (rows[~plan.noisy] == np.flatnonzero(~plan.noisy)).all()


def test_shuffle_is_a_permutation_of_the_noisy_set() -> None:
    """NCR shuffles captions among noisy pairs: the caption multiset is preserved."""
    groups = _groups(500, 25)
    plan = make_plan(groups, np.arange(500), "caption", 0.6, seed=1)
    noisy = np.flatnonzero(plan.noisy)
    assert sorted(plan.partner[noisy].tolist()) == noisy.tolist()


def test_plan_is_deterministic_per_seed() -> None:
    groups = _groups(300, 10)
    a = make_plan(groups, np.arange(300), "image", 0.5, seed=7)
    b = make_plan(groups, np.arange(300), "image", 0.5, seed=7)
    c = make_plan(groups, np.arange(300), "image", 0.5, seed=8)
    assert (a.partner == b.partner).all() and (a.noisy == b.noisy).all()
    assert (a.noisy != c.noisy).any()


def test_derange_with_a_dominant_group_falls_back_to_the_pool() -> None:
    groups = np.array([0] * 9 + [1, 2, 3], dtype=np.int64)
    members = np.arange(9)  # all in one group: no valid permutation among them
    partners = derange(members, groups, np.random.default_rng(0), pool=np.arange(12))
    assert (groups[partners] != 0).all()


def test_derange_single_member_and_impossible_case() -> None:
    groups = np.array([5, 5, 6], dtype=np.int64)
    partner = derange(np.array([0]), groups, np.random.default_rng(0), pool=np.arange(3))
    assert partner.tolist() == [2]
    with pytest.raises(ValueError, match="same caption"):
        derange(np.array([0, 1]), groups, np.random.default_rng(0), pool=np.array([0, 1]))


def test_rate_out_of_range_and_unknown_mode_are_rejected() -> None:
    groups = _groups(10, 5)
    with pytest.raises(ValueError, match="noise rate"):
        make_plan(groups, np.arange(10), "caption", 1.5, seed=0)
    with pytest.raises(ValueError, match="unknown noise mode"):
        make_plan(groups, np.arange(10), "swap", 0.5, seed=0)


def test_translation_plan_only_touches_pairs_with_the_language() -> None:
    groups = _groups(200, 30)
    has_de = np.arange(200) % 2 == 0
    plan = make_plan(groups, np.arange(200), "translation", 0.5, seed=0, lang_masks={"de": has_de})
    noisy = np.flatnonzero(plan.noisy)
    assert noisy.size == 50 and has_de[noisy].all()
    partners = plan.trans_partner["de"][noisy]
    assert has_de[partners].all() and (groups[partners] != groups[noisy]).all()
    with pytest.raises(ValueError, match="target language"):
        make_plan(groups, np.arange(200), "translation", 0.5, seed=0)


def test_replace_content_word_changes_exactly_one_known_word() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        new, detail = replace_content_word("two red circles and a kettle", rng, ["kettle", "frog"])
        old_words, new_words = "two red circles and a kettle".split(), new.split()
        assert len(old_words) == len(new_words)
        assert sum(a != b for a, b in zip(old_words, new_words, strict=True)) == 1
        assert detail.split(":")[0] in {"colour", "count", "noun"}
    new, detail = replace_content_word("An apple.", np.random.default_rng(1), ["apple", "sock"])
    assert new == "A sock." and detail == "noun:apple->sock"


def test_corrupt_text_differs_from_the_original() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        assert corrupt_text("ein roter Kreis oben", "zwei blaue Sterne unten", rng) != (
            "ein roter Kreis oben"
        )


def test_neighbour_noise_takes_a_caption_from_the_same_near_miss_group() -> None:
    groups = np.arange(600) % 150  # four items share each caption
    near_miss = np.arange(600) % 6  # six categories
    plan = make_plan(groups, np.arange(600), "neighbour", 0.4, seed=2, near_miss=near_miss)
    noisy = np.flatnonzero(plan.noisy)
    assert noisy.size == 240 and plan.fallbacks == 0
    partners = plan.partner[noisy]
    assert np.all(near_miss[partners] == near_miss[noisy])  # a near miss, by the data
    assert np.all(groups[partners] != groups[noisy])  # and really another caption
    assert np.array_equal(plan.text_rows()[noisy], partners)
    assert plan.kind(int(noisy[0])) == "neighbour" and plan.kind(int(np.flatnonzero(~plan.noisy)[0])) == "none"
    with pytest.raises(ValueError, match="near misses"):
        make_plan(groups, np.arange(600), "neighbour", 0.4, seed=2)


def test_a_lone_item_of_its_near_miss_group_falls_back_to_any_other_caption() -> None:
    groups = np.arange(40)
    near_miss = np.zeros(40, dtype=np.int64)
    near_miss[0] = 1  # alone in its group
    plan = make_plan(groups, np.arange(40), "neighbour", 1.0, seed=0, near_miss=near_miss)
    assert plan.fallbacks == 1 and plan.partner[0] != 0


def test_mixed_noise_is_a_third_each_of_shuffle_neighbour_and_partial() -> None:
    groups = np.arange(900) % 300
    near_miss = np.arange(900) % 9
    plan = make_plan(groups, np.arange(900), "mixed", 0.5, seed=4, near_miss=near_miss)
    noisy = np.flatnonzero(plan.noisy)
    kinds = [plan.kind(int(i)) for i in noisy]
    assert {k: kinds.count(k) for k in set(kinds)} == {"caption_shuffle": 150, "neighbour": 150, "partial": 150}
    neighbours = noisy[[k == "neighbour" for k in kinds]]
    assert np.all(near_miss[plan.partner[neighbours]] == near_miss[neighbours])
    partial = noisy[[k == "partial" for k in kinds]]
    assert np.array_equal(plan.text_rows()[partial], partial)  # partial keeps its own caption, edited


def test_synth_near_misses_differ_only_in_colour(tmp_path) -> None:
    from pairsift.pipeline.datasets.synth import SynthSource
    from pairsift.pipeline.datasets.writer import build_dataset, plan_for

    source = SynthSource(3000, seed=5, image_size=32)
    plan = plan_for(source, "neighbour", 0.5, seed=5, noise_langs=[])
    assert plan.fallbacks < 0.05 * plan.noisy.sum()  # (10,000 scenes: none at all)
    within = [i for i in np.flatnonzero(plan.noisy).tolist()
              if source.near_miss_group(i) == source.near_miss_group(int(plan.partner[i]))]
    for i in within[:60]:
        mine, theirs = source.scene(i).groups, source.scene(int(plan.partner[i])).groups
        assert sorted((g.count, g.shape, str(g.position)) for g in mine) == sorted(
            (g.count, g.shape, str(g.position)) for g in theirs)
        assert source.texts(i).caption != source.texts(int(plan.partner[i])).caption
    small = SynthSource(200, seed=5, image_size=32)
    summary = build_dataset(small, str(tmp_path), noise=0.5, mode="mixed", seed=5, shard_size=200)
    assert summary["noisy"] > 0 and "near_miss_fallbacks" in summary
