"""Quality benchmark harness: re-pairing without re-embedding, jobs, table, content cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pairsift.benchmarks import embedding_cache
from pairsift.benchmarks.embedding_cache import embed_source
from pairsift.benchmarks.quality import render_table
from pairsift.benchmarks.quality_runs import (
    Setting,
    eval_rows,
    make_setting_data,
    methods_for,
    run_job,
)
from pairsift.pipeline.datasets.synth import SynthSource


@pytest.mark.parametrize("mode", ["caption", "image"])
def test_setting_repairs_cached_rows_only(mode: str, make_clean) -> None:
    emb = make_clean()
    data = make_setting_data(emb, Setting(mode, 0.5, seed=1))
    train_rows = np.flatnonzero(emb.splits == "train")
    assert data.is_noisy.mean() == pytest.approx(0.5, abs=0.01)
    fixed, moved = (data.train.image, data.train.text) if mode == "caption" else (
        data.train.text, data.train.image)
    fixed_src, moved_src = (emb.image, emb.text) if mode == "caption" else (emb.text, emb.image)
    assert np.array_equal(fixed, fixed_src[train_rows])
    assert np.array_equal(moved[~data.is_noisy], moved_src[train_rows][~data.is_noisy])
    noisy = np.flatnonzero(data.is_noisy)
    for row in noisy:  # every noisy pair carries another item's row, of another group
        source_row = int(np.flatnonzero((moved_src == moved[row]).all(axis=1))[0])
        assert source_row != train_rows[row]
        assert emb.groups[source_row] != emb.groups[train_rows[row]]
    test = eval_rows(emb)
    assert len(set(emb.groups[test].tolist())) == len(test)  # one item per caption
    assert np.array_equal(data.test.image, emb.image[test])


def test_jobs_report_consistent_figures(make_clean, tiny_cfg) -> None:
    emb, cfg = make_clean(), tiny_cfg()
    setting = Setting("caption", 0.4, seed=0)
    oracle = run_job(emb, setting, "oracle", cfg)
    assert oracle.precision == 1.0 and oracle.recall == 1.0
    assert oracle.true_noise == pytest.approx(0.4, abs=0.01)
    clip = run_job(emb, setting, "clip_score", cfg)
    kept_fraction = clip.recall * (1 - clip.true_noise) / clip.precision
    assert kept_fraction == pytest.approx(1 - clip.true_noise, abs=0.01)
    pairsift = run_job(emb, setting, "pairsift", cfg)
    for row in (oracle, clip, pairsift):
        assert 0.0 <= row.auc <= 1.0
        assert set(row.recall_at) >= {"i2t_r1", "t2i_r10", "rsum"}
    again = run_job(emb, setting, "pairsift", cfg)
    assert again.auc == pairsift.auc and again.recall_at == pairsift.recall_at


def test_methods_and_table(make_clean, tiny_cfg) -> None:
    assert "-mutual" not in methods_for([]) and "-mutual" in methods_for(["es"])
    with pytest.raises(ValueError, match="unknown method"):
        methods_for([], ["magic"])
    emb, cfg = make_clean(), tiny_cfg()
    rows = [run_job(emb, Setting("image", 0.5, seed), "all", cfg) for seed in (0, 1)]
    table = render_table(rows)
    assert "### image shuffle, 50% noise" in table
    line = next(line for line in table.splitlines() if line.startswith("| (a) all pairs"))
    assert line.count("±") == 6  # AUC, loss AUC, precision, recall, true noise, rSum
    assert f"{np.mean([r.recall_at['rsum'] for r in rows]):.1f}" in line


class _FakeEncoder:
    calls = 0

    def image_transform(self):
        return lambda image: torch.tensor(np.asarray(image, dtype=np.float32).mean(axis=(0, 1)))

    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        _FakeEncoder.calls += pixels.shape[0]
        return torch.nn.functional.normalize(pixels.view(pixels.shape[0], -1), dim=-1)

    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        _FakeEncoder.calls += len(texts)
        return torch.tensor([[len(t), t.count("a") + 1.0] for t in texts])


def test_embedding_cache_is_content_addressed(tmp_path, monkeypatch) -> None:
    import pairsift.models.encoders.factory as encoders

    monkeypatch.setattr(encoders, "build_encoder", lambda *a, **k: _FakeEncoder())
    first = embed_source(SynthSource(12, seed=0), "synth", "fake", cache_dir=str(tmp_path))
    assert first.embedded > 0 and _FakeEncoder.calls > 0
    _FakeEncoder.calls = 0
    second = embed_source(SynthSource(12, seed=0), "synth", "fake", cache_dir=str(tmp_path))
    assert second.embedded == 0 and _FakeEncoder.calls == 0
    assert np.array_equal(first.image, second.image) and np.array_equal(first.text, second.text)
    bigger = embed_source(SynthSource(15, seed=0), "synth", "fake", cache_dir=str(tmp_path))
    assert 0 < bigger.embedded <= 6  # only the 3 new images and their captions
    assert np.array_equal(bigger.image[:12], first.image)


def test_cache_keeps_digests_ending_in_zero_bytes(tmp_path) -> None:
    store = embedding_cache._Store(str(tmp_path / "x.npz"))
    key = bytes(31) + b"\0"
    other = b"\1" * 30 + b"\0\0"
    store.put(key, np.ones(3))
    store.put(other, np.zeros(3))
    store.save()
    again = embedding_cache._Store(str(tmp_path / "x.npz"))
    assert np.array_equal(again.get(key), np.ones(3)) and np.array_equal(again.get(other), np.zeros(3))


def test_bench_rejects_noise_it_cannot_replay_from_cache() -> None:
    from pairsift.pipeline.cli import build_parser

    args = build_parser().parse_args(
        ["bench", "quality", "--dataset", "synth", "--pairs", "20", "--noise-mode", "translation"])
    with pytest.raises(ValueError, match="translation noise: build it"):
        args.func(args)


def test_clip_score_and_gmm_rank_the_scores_pairsift_divides_with(make_clean, tiny_cfg) -> None:
    """The baselines' scores are the shipped score pass's (the fit heads, out-of-fold where
    it cross-fits): the same loss and similarity the pairsift row's audit holds."""
    from pairsift.benchmarks.quality_runs import setting_shards, shipped_division, shipped_scores

    emb, cfg = make_clean(), tiny_cfg()
    data = make_setting_data(emb, Setting("caption", 0.4, seed=0))
    scores = shipped_scores(data.train, cfg)
    shipped = shipped_division(setting_shards(data.train), cfg)
    for name in ("loss", "similarity"):
        assert np.array_equal(scores[name], shipped.labels.columns[name])
    gmm = run_job(emb, Setting("caption", 0.4, seed=0), "gmm", cfg)
    assert 0.0 <= gmm.auc <= 1.0 and gmm.est_noise is not None


def test_the_crossfit_ablation_scores_in_sample(make_clean, tiny_cfg) -> None:
    from pairsift.benchmarks.quality_runs import ABLATIONS, with_changes

    assert ABLATIONS["-crossfit"][1] == {"train": {"division_folds": 0}}
    assert with_changes(tiny_cfg(), ABLATIONS["-crossfit"][1]).train.division_folds == 0
    row = run_job(make_clean(), Setting("caption", 0.4, seed=0), "-crossfit", tiny_cfg())
    assert 0.0 <= row.auc <= 1.0 and set(row.recall_at) >= {"rsum"}


def test_ablations_are_judged_on_out_model(make_clean, tiny_cfg) -> None:
    """Every pairsift-family row reports the rSum of the OUT/model it ships, and the table
    pairs each ablation with the full method seed by seed."""
    emb, cfg = make_clean(), tiny_cfg()
    rows = [run_job(emb, Setting("caption", 0.4, seed), method, cfg)
            for seed in (0, 1) for method in ("pairsift", "pairsift_filter", "-consistency", "+refurbish")]
    by = {(r.method, r.setting.seed): r for r in rows}
    for seed in (0, 1):
        shipped = by[("pairsift_filter", seed)].recall_at["rsum"]
        assert by[("pairsift", seed)].model_rsum == pytest.approx(shipped)
        assert by[("-consistency", seed)].model_rsum is not None
    table = render_table(rows)
    assert "OUT/model rSum" in table
    assert "- component consistency: pairsift − -consistency, OUT/model rSum:" in table
    assert "- component refurbish: +refurbish − pairsift, detection AUC:" in table
    assert run_job(emb, Setting("caption", 0.4, 0), "all", cfg).model_rsum is None


def test_set_changes_the_base_config() -> None:
    import argparse

    from pairsift.benchmarks.quality import base_config, parse_settings

    args = argparse.Namespace(epochs=None, warmup_epochs=None,
                              set=["train.final_weight_power=1", "division.method=gmm"])
    cfg = base_config(args)
    assert cfg.train.final_weight_power == 1 and cfg.division.method == "gmm"
    with pytest.raises(ValueError, match="section.key=value"):
        parse_settings(["final_weight_power"])
    with pytest.raises(ValueError, match="no train.nonsense"):
        base_config(argparse.Namespace(epochs=None, warmup_epochs=None,
                                       set=["train.nonsense=1"]))
