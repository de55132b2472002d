"""`pairsift bench score`: times the bank scores and the neighbour consistency per pair."""

from __future__ import annotations

from pairsift.benchmarks.score_cost import measure
from pairsift.pipeline.cli import main


def test_measure_times_both_parts_on_the_requested_shapes() -> None:
    row = measure(pairs=300, anchors=120, dim=16, k=5, negatives=8, rounds=1)
    assert (row["pairs"], row["anchors"], row["dim"], row["neighbours"]) == (300, 120, 16, 5)
    assert row["bank_scores_pairs_per_s"] > 0 and row["consistency_pairs_per_s"] > 0
    ratio = row["bank_scores_pairs_per_s"] / row["consistency_pairs_per_s"]
    assert abs(row["consistency_over_bank_time"] - ratio) < 0.02 * ratio + 0.01


def test_command_prints_one_row_per_anchor_count(capsys) -> None:
    code = main(["bench", "score", "--pairs", "200", "--anchors", "50", "100", "--dim", "8",
                 "--rounds", "1", "--threads", "1"])
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("| ")]
    assert code == 0
    assert [ln.split("|")[1].strip() for ln in lines[1:]] == ["50", "100"]
