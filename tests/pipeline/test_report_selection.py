"""The report's galleries and counts: picked from the audit file by file, the same whatever
way the audit is split or merged, bounded, and what each gallery says it is."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from pairsift.models.noise.null import EmpiricalNull, storey_interval
from pairsift.pipeline.report.selection import GALLERY_SIZES, STATUS_EXAMPLES, file_candidates
from pairsift.pipeline.tally import Tally, audit_tally

KEEP = {"clean", "hard"}


def audit(n: int = 300, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    label = rng.choice(["clean", "hard", "noisy"], n).astype(object)
    status = np.where(rng.random(n) < 0.1, "decode_error", "ok").astype(object)
    label[status != "ok"] = None
    p_clean = np.where(status == "ok", rng.random(n), np.nan)
    return pa.table({
        "source_shard": [f"s{i // 100}" for i in range(n)], "key": [f"k{i:04d}" for i in range(n)],
        "index": [i % 100 for i in range(n)], "status": status.tolist(), "label": label.tolist(),
        "p_clean": p_clean, "reason": [f"{lab}.x: why" if lab else "decode_error: bad" for lab in label],
        "label_pt": [lab for lab in label], "p_clean_pt": rng.random(n),
        "caption": [f"caption {i}" for i in range(n)], "caption_pt": [f"legenda {i}" for i in range(n)],
    })


def galleries(table: pa.Table, cuts: list[int], reverse: bool = False) -> dict:
    parts = [table.slice(a, b - a) for a, b in zip([0, *cuts], [*cuts, table.num_rows], strict=True)]
    found = [file_candidates(part, KEEP, ["pt"], seed=3) for part in parts]
    total = found[0]
    for more in (found[1:][::-1] if reverse else found[1:]):
        total = total + more
    return total.to_dict()


def test_the_galleries_do_not_depend_on_how_the_audit_is_split() -> None:
    table = audit()
    whole = galleries(table, [])
    assert galleries(table, [100, 200]) == whole == galleries(table, [37, 150, 299], reverse=True)


def test_each_gallery_is_what_it_says() -> None:
    table = audit()
    chosen = galleries(table, [100, 200])
    rows = table.to_pylist()
    noisy = sorted(r["p_clean"] for r in rows if r["label"] == "noisy")
    kept = sorted(r["p_clean"] for r in rows if r["label"] in KEEP)
    assert [r["p_clean"] for r in chosen["noisy"]] == noisy[: GALLERY_SIZES["noisy"]]
    assert [r["p_clean"] for r in chosen["borderline_dropped"]] == noisy[::-1][:24]
    assert [r["p_clean"] for r in chosen["borderline_kept"]] == kept[:24]
    assert len(chosen["random_kept"]) == 24 and {r["label"] for r in chosen["random_kept"]} <= KEEP
    errors = [(r["source_shard"], r["index"]) for r in rows if r["status"] == "decode_error"]
    assert [(r["source_shard"], r["index"]) for r in chosen["status_decode_error"]] == errors[:STATUS_EXAMPLES]
    pt = sorted(r["p_clean_pt"] for r in rows if r["label_pt"])
    assert [r["p_clean_pt"] for r in chosen["translation_pt"]] == pytest.approx(pt[:12])
    assert all("caption_pt" in r and "reason" in r for r in chosen["translation_pt"])


def test_the_random_gallery_follows_the_seed() -> None:
    table = audit()
    one = file_candidates(table, KEEP, [], seed=1).rows("random_kept")
    two = file_candidates(table, KEEP, [], seed=2).rows("random_kept")
    assert one == file_candidates(table, KEEP, [], seed=1).rows("random_kept") and one != two


def test_the_tally_counts_shards_and_p_clean_and_survives_json() -> None:
    table = audit()
    tally, _ = audit_tally(table, KEEP)
    outcomes = tally.shard_outcomes()
    assert sorted(outcomes) == ["s0", "s1", "s2"] and sum(map(sum, (c.values() for c in outcomes.values()))) == 300
    assert tally.p_clean.sum() == sum(1 for r in table.to_pylist() if r["label"])
    back = Tally.from_dict(tally.to_dict())
    assert back.shard_outcomes() == outcomes and np.array_equal(back.p_clean, tally.p_clean)


def test_the_noise_share_interval_is_the_nulls_estimate_with_its_spread() -> None:
    rng = np.random.default_rng(0)
    bins = np.linspace(0, 1, 65)
    centres = (bins[:-1] + bins[1:]) / 2

    def counts(n: int) -> tuple[np.ndarray, np.ndarray]:
        clean, noise = rng.beta(2, 6, int(n * 0.7)), rng.beta(6, 2, n - int(n * 0.7))
        observed = np.histogram(np.concatenate([clean, noise]), bins)[0]
        return observed, np.histogram(rng.beta(6, 2, n), bins)[0]

    small, large = counts(500), counts(50_000)
    low, pi0, high = storey_interval(*small, lam=0.5)
    fit = EmpiricalNull.fit(*small, centres, 0.0, 1.0, 1e-3, 0.5)
    assert low < pi0 < high and pi0 == pytest.approx(fit.noise_ratio)
    wide = high - low
    low, pi0, high = storey_interval(*large, lam=0.5)
    assert low < 0.3 < high and high - low < wide / 5  # the true share, and √n narrowing
    assert storey_interval(np.zeros(64), small[1], 0.5) is None
