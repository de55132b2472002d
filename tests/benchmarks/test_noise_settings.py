"""Near-miss, partial and mixed noise replayed from cached embeddings, as `pairsift data`
draws them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pairsift.benchmarks.embedding_cache import embed_source
from pairsift.benchmarks.noise_settings import (
    Setting,
    add_edited_captions,
    edited_rows,
    setting_plan,
)
from pairsift.benchmarks.quality_runs import make_setting_data, run_job
from pairsift.pipeline.datasets.synth import SynthSource
from pairsift.pipeline.datasets.writer import noisy_texts, plan_for


class _TextLengthEncoder:
    """Stand-in towers: an image's mean colour, a caption's letter counts (distinct per word)."""

    def image_transform(self):
        return lambda image: torch.tensor(np.asarray(image, dtype=np.float32).mean(axis=(0, 1)))

    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(pixels.view(pixels.shape[0], -1), dim=-1)

    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        letters = "abcdefghijklmnopqrstuvwxyz"
        return torch.tensor([[t.lower().count(c) for c in letters] for t in texts],
                            dtype=torch.float32)


@pytest.fixture
def synth_emb(tmp_path, monkeypatch):
    import pairsift.models.encoders.factory as encoders

    monkeypatch.setattr(encoders, "build_encoder", lambda *a, **k: _TextLengthEncoder())
    source = SynthSource(120, seed=3)
    return source, embed_source(source, "synth", "fake", cache_dir=str(tmp_path)), tmp_path


def test_neighbour_partners_share_the_near_miss_group(synth_emb) -> None:
    source, emb, _ = synth_emb
    assert emb.near_miss is not None
    setting = Setting("neighbour", 0.5, seed=2)
    plan = setting_plan(emb, setting)
    noisy = np.flatnonzero(plan.noisy)
    same = np.array([emb.near_miss[i] == emb.near_miss[plan.partner[i]] for i in noisy])
    # a near miss, unless its group had no other caption (120 scenes: many groups of one)
    assert noisy.size > 0 and same.sum() > 0 and (~same).sum() == plan.fallbacks
    assert all(emb.groups[i] != emb.groups[plan.partner[i]] for i in noisy)
    # the same plan `pairsift data` draws over the source
    data_plan = plan_for(source, "neighbour", 0.5, 2, [])
    assert np.array_equal(plan.partner, data_plan.partner)
    data = make_setting_data(emb, setting)
    train = np.flatnonzero(emb.splits == "train")
    assert np.array_equal(data.train.text, emb.text[plan.text_rows()[train]])
    assert np.array_equal(data.train.image, emb.image[train])


@pytest.mark.parametrize("mode", ["partial", "mixed"])
def test_edited_captions_are_the_ones_pairsift_data_writes(mode: str, synth_emb) -> None:
    source, emb, cache = synth_emb
    setting = Setting(mode, 0.6, seed=1)
    with pytest.raises(ValueError, match="edited captions were not embedded"):
        make_setting_data(emb, setting)
    add_edited_captions(emb, source, [setting], "fake", None, str(cache))
    plan = setting_plan(emb, setting)
    rows = edited_rows(plan)
    assert rows.size > 0
    if mode == "mixed":
        parts = {plan.mode_of(i) for i in np.flatnonzero(plan.noisy)}
        assert parts == {"caption", "neighbour", "partial"}
    encoder = _TextLengthEncoder()
    data = make_setting_data(emb, setting)
    position = {int(r): k for k, r in enumerate(np.flatnonzero(emb.splits == "train"))}
    for row in rows[:10]:
        written = noisy_texts(source, plan, int(row), [])[0].caption
        assert written != source.texts(int(row)).caption
        expected = encoder.encode_texts([written]).numpy()[0]
        assert np.array_equal(data.train.text[position[int(row)]], expected)
    untouched = [position[i] for i in np.flatnonzero(~plan.noisy) if i in position]
    assert np.array_equal(data.train.text[untouched],
                          emb.text[np.flatnonzero(emb.splits == "train")][untouched])


def test_a_near_miss_job_runs(make_clean, tiny_cfg) -> None:
    emb = make_clean()
    emb.near_miss = emb.groups // 4  # four caption groups to a near-miss group
    row = run_job(emb, Setting("neighbour", 0.4, seed=0), "pairsift", tiny_cfg())
    assert row.auc is not None and 0.0 <= row.auc <= 1.0
    assert row.true_noise == pytest.approx(0.4, abs=0.02)
