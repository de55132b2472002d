"""`pairsift audit OUT`: the reviewer's questions, answered on the demo's output."""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl
import pytest

from pairsift.pipeline.cli import console_main

pytestmark = pytest.mark.slow


def audit(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = console_main(["audit", *args])
    out, err = capsys.readouterr()
    return code, out, err


def frame(run: Path) -> pl.DataFrame:
    return pl.read_parquet(run / "audit" / "*.parquet")


def test_key_prints_the_whole_row_and_its_reason(demo_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    row = frame(demo_run).filter(pl.col("label") == "noisy").row(0, named=True)
    code, out, _ = audit(capsys, str(demo_run), "--key", row["key"])
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[-1].split(None, 1) == ["reason", row["reason"]]
    printed = dict(line.split(None, 1) for line in lines if len(line.split(None, 1)) == 2)
    assert printed["label"] == "noisy" and printed["caption"] == row["caption"]
    assert float(printed["p_clean"]) == pytest.approx(row["p_clean"], rel=1e-5)


def test_noisy_sorted_by_p_clean_as_json(demo_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = audit(capsys, str(demo_run), "--label", "noisy", "--sort", "p_clean", "--limit", "20",
                         "--format", "json")
    rows = json.loads(out)
    expected = frame(demo_run).filter(pl.col("label") == "noisy").sort(["p_clean", "source_shard", "key"])
    assert code == 0 and len(rows) == 20
    assert [r["key"] for r in rows] == expected["key"].head(20).to_list()
    assert all(r["reason"].startswith("noisy.") for r in rows)


def test_the_table_lists_the_selection(demo_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = audit(capsys, str(demo_run), "--label", "hard", "--sort", "uncertainty", "--desc",
                           "--limit", "5")
    hard = frame(demo_run).filter(pl.col("label") == "hard")
    assert code == 0 and f"5 of {hard.height:,} matching pairs" in err
    top = hard.sort("uncertainty", descending=True)["key"].head(5).to_list()
    assert re.findall(r"\| \d{5}\s+\| (\S+)", out) == top


def test_status_selects_error_rows(finished_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = audit(capsys, str(finished_run), "--status", "decode_error", "--format", "json")
    rows = json.loads(out)
    assert code == 0 and [r["key"] for r in rows] == ["corrupt_image"]
    assert rows[0]["label"] is None and rows[0]["reason"].startswith("decode_error: ")


def test_html_writes_a_gallery_of_the_selection(demo_run: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    page = tmp_path / "noisy.html"
    code, _, err = audit(capsys, str(demo_run), "--label", "noisy", "--sort", "p_clean", "--desc",
                         "--limit", "12", "--html", str(page))
    text = page.read_text()
    assert code == 0 and "wrote" in err
    assert text.count('<figure class="pair"') == 12 == text.count('src="data:image/jpeg;base64,')
    assert text.count('<p class="reason">noisy.') == 12


def test_language_labels_are_asked_with_lang(translated_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = audit(capsys, str(translated_run), "--lang", "pt", "--label", "noisy", "--format", "json")
    rows = json.loads(out)
    assert code == 0 and rows
    assert all(r["label_pt"] == "noisy" and r["reason_pt"].startswith("noisy.") for r in rows)


def test_the_match_count_covers_the_whole_audit_in_input_order(
        demo_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    audit_rows = frame(demo_run)
    noisy = audit_rows.filter(pl.col("label") == "noisy").height
    _, _, err = audit(capsys, str(demo_run), "--label", "noisy", "--limit", "3")
    assert f"3 of {noisy:,} matching pairs" in err
    _, _, err = audit(capsys, str(demo_run))
    assert f"20 of {audit_rows.height:,} matching pairs" in err


def test_a_key_shared_by_two_shards_prints_both_and_shard_picks_one(
        finished_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shared = frame(finished_run).group_by("key").len().filter(pl.col("len") > 1)
    key = shared["key"][0] if shared.height else frame(finished_run)["key"][0]
    code, out, _ = audit(capsys, str(finished_run), "--key", key)
    rows = frame(finished_run).filter(pl.col("key") == key)
    assert code == 0 and out.count("\nreason ") + out.startswith("reason ") == rows.height
    shard = rows["source_shard"][0]
    code, out, _ = audit(capsys, str(finished_run), "--key", key, "--shard", shard, "--format", "json")
    assert code == 0 and [r["source_shard"] for r in json.loads(out)] == [shard]


@pytest.mark.parametrize(("args", "message"), [
    (["--label", "nosy"], "did you mean 'noisy'"),
    (["--sort", "pclean"], "did you mean 'p_clean'"),
    (["--status", "decode_eror"], "did you mean 'decode_error'"),
    (["--key", "no-such-key"], "no pair with key"),
    (["--key", "000000001", "--label", "clean"], "--key prints one pair"),
    (["--lang", "pt"], "this run labelled no 'pt' translations"),
])
def test_mistakes_are_one_clear_line(demo_run: Path, capsys: pytest.CaptureFixture[str],
                                     args: list[str], message: str) -> None:
    code, _, err = audit(capsys, str(demo_run), *args)
    assert code == 1 and message in err and len(err.strip().splitlines()) == 1


def test_a_folder_that_is_no_run_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = audit(capsys, str(tmp_path))
    assert code == 1 and "no audit/ folder" in err
    code, _, err = audit(capsys, str(tmp_path / "missing"))
    assert code == 1 and "does not exist" in err


@pytest.mark.parametrize("limit", ["0", "-3"])
def test_a_limit_below_one_is_refused(demo_run: Path, capsys: pytest.CaptureFixture[str], limit: str) -> None:
    with pytest.raises(SystemExit) as raised:
        audit(capsys, str(demo_run), "--limit", limit)
    assert raised.value.code == 2 and "at least 1" in capsys.readouterr().err
