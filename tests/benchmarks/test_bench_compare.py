"""`pairsift bench compare`: seed means of two tables, old → new, for what both measured."""

from __future__ import annotations

from pairsift.benchmarks.compare import compare_table, seed_means


def _row(method: str, seed: int, auc: float, rsum: float, rate: float = 0.5) -> dict:
    return {"method": method, "mode": "caption", "rate": rate, "seed": seed, "auc": auc,
            "precision": 0.9, "recall": 0.8, "est_noise": None, "rsum": rsum}


def test_means_and_side_by_side() -> None:
    old = [_row("pairsift", 0, 0.80, 100.0), _row("pairsift", 1, 0.90, 120.0),
           _row("gmm", 0, 0.7, 90.0), _row("pairsift", 0, 0.5, 1.0, rate=0.2)]
    new = [_row("pairsift", 0, 0.86, 130.0), _row("pairsift", 1, 0.88, 110.0)]
    means = seed_means(old, {0.5})
    assert abs(means[("caption", 0.5, "pairsift")]["auc"] - 0.85) < 1e-12
    assert means[("caption", 0.5, "pairsift")]["seeds"] == 2
    assert means[("caption", 0.5, "pairsift")]["est_noise"] is None
    table = compare_table(old, new, {0.5})
    assert "0.850 → 0.870" in table and "110.0 → 120.0" in table
    assert "GMM" not in table  # only in the old table: nothing to compare
    assert "20% noise" not in table
