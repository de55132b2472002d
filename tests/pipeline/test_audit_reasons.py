"""Every audit row of a real run says why it ended as it did, in words that agree with its
label and its numbers (the division's own numbers, not a second computation)."""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl
import pytest

from pairsift.models.noise.reasons import Rule, reason_holds

pytestmark = pytest.mark.slow
CODES = {rule.value for rule in Rule}


def check_reasons(audit: pl.DataFrame, label: str = "label", reason: str = "reason",
                  p_name: str = "p_clean") -> int:
    """Asserts every labelled row's reason; returns how many rows were checked."""
    labelled = audit.filter(pl.col(label).is_not_null())
    for row in labelled.iter_rows(named=True):
        text = row[reason]
        assert text, row
        code = text.split(":", 1)[0]
        assert code in CODES and code.split(".")[0] == row[label], text
        assert reason_holds(text), text
        quoted = re.search(rf"{p_name} (-?\d+\.\d+) ", text)
        if quoted:  # the p_clean the reason compared is the row's own
            digits = len(quoted.group(1).split(".")[1])
            assert abs(row[p_name] - float(quoted.group(1))) <= 0.5 * 10 ** -digits + 1e-6, text
    return labelled.height


@pytest.mark.parametrize("run_name", ["demo_run", "finished_run"])
def test_every_labelled_row_has_a_reason_consistent_with_its_label(run_name: str,
                                                                   request: pytest.FixtureRequest) -> None:
    run: Path = request.getfixturevalue(run_name)
    audit = pl.read_parquet(run / "audit" / "*.parquet")
    assert check_reasons(audit) == audit.filter(pl.col("status") == "ok").height > 0


def test_rows_without_a_label_give_status_and_error(finished_run: Path) -> None:
    everything = pl.read_parquet(finished_run / "audit" / "*.parquet")
    audit = everything.filter(pl.col("label").is_null())
    assert audit.height == 4
    for row in audit.iter_rows(named=True):
        assert row["reason"] == f"{row['status']}: {row['error']}"
    # the duplicate names the pair it copies: the first pair of the first shard
    first = everything.filter(pl.col("index") == 0).sort("source_shard").row(0, named=True)
    duplicate = audit.filter(pl.col("status") == "duplicate").row(0, named=True)
    assert duplicate["error"].endswith(f"as an earlier pair ({first['source_shard']}/{first['key']})")


def test_each_translation_label_has_its_own_reason(translated_run: Path) -> None:
    audit = pl.read_parquet(translated_run / "audit" / "*.parquet")
    assert check_reasons(audit, "label_pt", "reason_pt", "p_clean_pt") > 0
    assert check_reasons(audit) > 0
    noisy = audit.filter(pl.col("label_pt") == "noisy")
    assert noisy.height and noisy["reason_pt"].str.contains("translation margin").all()


def test_noise_kind_describes_dropped_pairs_only(demo_run: Path) -> None:
    audit = pl.read_parquet(demo_run / "audit" / "*.parquet")
    kinds = dict(audit.group_by("label").agg(pl.col("noise_kind_pred").unique()).iter_rows())
    assert set(kinds["noisy"]) <= {"partial", "complete"}
    assert kinds["clean"] == [None] and kinds["hard"] == [None]
