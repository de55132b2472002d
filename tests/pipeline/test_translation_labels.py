"""A run with a target language labels each translation on its own, and ships it only when
that label is kept (the shipped path of the per-language division; the run is
``translated_run``, tests/conftest.py)."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import polars as pl
import pytest
from sklearn.metrics import roc_auc_score

pytestmark = pytest.mark.slow


def _audit(out: Path) -> pl.DataFrame:
    return pl.read_parquet(sorted((out / "audit").glob("*.parquet"))).filter(pl.col("status") == "ok")


def test_every_translation_gets_its_own_label_and_posterior(translated_run: Path) -> None:
    audit = _audit(translated_run)
    assert audit["label_pt"].null_count() == 0 and audit["p_clean_pt"].null_count() == 0
    assert set(audit["label_pt"].unique()) <= {"clean", "hard", "noisy"}
    broken = (audit["noise_kind"] == "translation").to_numpy()
    assert 0.2 < broken.mean() < 0.6
    assert roc_auc_score(broken, -audit["p_clean_pt"].to_numpy()) > 0.8
    assert audit["translation_margin_pt"].null_count() == 0
    assert not any(name.startswith("null_") for name in audit.columns)
    fit = json.loads((translated_run / "fit" / "noise_fit.json").read_text())
    assert set(fit["languages"]) == {"pt"}


def test_a_kept_pair_ships_its_translation_only_when_that_label_is_kept(translated_run: Path) -> None:
    audit = _audit(translated_run)
    kept = audit.filter(pl.col("label").is_in(["clean", "hard"]))
    dropped = kept.filter(pl.col("label_pt") == "noisy")
    assert len(dropped) > 0 and len(kept) > len(dropped)
    assert (dropped["translations_dropped"].str.starts_with("pt: translation labelled noisy")).all()
    assert kept.filter(pl.col("label_pt") != "noisy")["translations_dropped"].null_count() == len(kept) - len(dropped)
    members: dict[str, set[str]] = {}
    docs: dict[str, dict] = {}
    for shard in sorted((translated_run / "shards").glob("*.tar")):
        with tarfile.open(shard) as tar:
            for member in tar.getmembers():
                key, _, ext = member.name.partition(".")
                members.setdefault(key, set()).add(ext)
                if ext == "json":
                    handle = tar.extractfile(member)
                    assert handle is not None
                    docs[key] = json.loads(handle.read())
    assert set(members) == set(kept["key"].to_list())
    for row in kept.iter_rows(named=True):
        assert ("pt.txt" in members[row["key"]]) == (row["label_pt"] != "noisy"), row["key"]
        assert docs[row["key"]]["label_pt"] == row["label_pt"]


def test_the_benchmark_reads_the_same_figures_off_the_run(translated_run: Path) -> None:
    from pairsift.benchmarks.translation_labels import measure

    row = measure(translated_run, "pt")
    audit = _audit(translated_run)
    broken = (audit["noise_kind"] == "translation").to_numpy()
    assert row["pairs"] == len(audit) and row["broken_in_input"] == pytest.approx(broken.mean())
    assert row["auc_lang"] == pytest.approx(roc_auc_score(broken, -audit["p_clean_pt"].to_numpy()))
    kept = audit.filter(pl.col("label").is_in(["clean", "hard"]))
    assert row["shipped"] == len(kept.filter(pl.col("label_pt") != "noisy"))
    assert 0.0 <= row["broken_shipped"] < row["broken_in_input"]
    assert "auc_english" not in row  # translation noise only: no English mismatch to detect


def test_the_summary_and_report_count_translations_by_their_own_label(translated_run: Path) -> None:
    audit = _audit(translated_run)
    summary = json.loads((translated_run / "summary.json").read_text())
    expected = {k: v for k, v in audit["label_pt"].value_counts().iter_rows()}
    assert summary["pairs"]["translations_by_label"] == {"pt": expected}
    assert "Translations (pt) by their own label" in (translated_run / "report.html").read_text()
