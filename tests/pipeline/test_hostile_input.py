"""The hostile-input corpus through `pairsift run`, one run per input kind: the run ends
well, every input pair is in the audit exactly once with the status it must get, no file
outside the input is opened, and nothing is written outside OUT."""

from __future__ import annotations

import builtins
import io
import json
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from pairsift.pipeline.cli import console_main

MARKER = "PLANTED-OUTSIDE-7f3a"  # what the corpus plants outside its inputs (conftest.py)


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``root`` (links not followed) with its size and mtime."""
    out = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            info = os.lstat(path)
            out[path] = (info.st_size, info.st_mtime_ns)
    return out


@pytest.fixture
def opened_outside(hostile_corpus, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Records every open() of a path under the corpus's outside folder, in any thread."""
    seen: list[str] = []
    real_open = builtins.open
    outside = os.path.realpath(hostile_corpus.outside)

    def spying_open(file, *args, **kwargs):  # noqa: ANN001, ANN202 - open()'s own signature
        if isinstance(file, (str, bytes, os.PathLike)):
            path = os.path.realpath(os.fsdecode(file))
            if path.startswith(outside):
                seen.append(path)
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", spying_open)
    monkeypatch.setattr(io, "open", spying_open)
    yield seen


def _config_file(tmp_path: Path, run_config) -> str:  # noqa: ANN001 - a fixture
    cfg = run_config()
    cfg.limits.max_image_bytes = 2**20  # so a 2.4 MB png stands for an image over the cap
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg.to_dict()))
    return str(path)


@pytest.mark.parametrize("kind", ["tars", "tables", "folder"])
def test_every_hostile_pair_is_in_the_audit_once_with_its_status(
    kind: str, hostile_corpus, tmp_path: Path, opened_outside: list[str],  # noqa: ANN001
    capsys: pytest.CaptureFixture[str], run_config,  # noqa: ANN001
) -> None:
    corpus = hostile_corpus
    out = tmp_path / "out"
    before = _tree(corpus.root)
    code = console_main(["run", "--input", str(corpus.root / kind), "--output", str(out),
                         "--config", _config_file(tmp_path, run_config), "--wave-size", "0"])
    assert code == 0, capsys.readouterr().err  # merely bad input: the run ends well
    audit = pl.read_parquet(out / "audit" / "*.parquet")  # one schema across the files
    got = dict(zip(zip(audit["source_shard"], audit["key"], strict=True), audit["status"], strict=True))
    assert audit.height == len(got)  # (shard, key) unique: no pair twice
    expected = corpus.expected[kind]
    wrong = {k: (got.get(k), v) for k, v in expected.items() if got.get(k) != v}
    assert not wrong, f"{len(wrong)} pairs: (got, expected) {dict(list(wrong.items())[:12])}"
    assert set(got) == set(expected)  # no pair lost, none invented
    bad = audit.filter(pl.col("status") != "ok")
    assert bad.filter(pl.col("error").is_null() | (pl.col("error") == "")).height == 0  # reasons
    pairs = json.loads((out / "summary.json").read_text())["pairs"]
    assert pairs["input"] == audit.height
    # nothing outside the input was opened, and nothing planted there reached OUT
    assert opened_outside == []
    for path in out.rglob("*"):
        if path.is_file():
            assert MARKER.encode() not in path.read_bytes(), path
    after = _tree(corpus.root)
    assert after == before  # nothing written (or touched) outside OUT, inputs included
    _check_shards(out, audit)
    _check_sql(out, audit)


def _check_sql(out: Path, audit: pl.DataFrame) -> None:
    """duckdb reads the audit and the curated parquet as one table each, empty files too."""
    import duckdb

    counts = dict(duckdb.sql(f"SELECT status, count(*) FROM '{out}/audit/*.parquet' GROUP BY 1").fetchall())
    assert counts == dict(audit["status"].value_counts().iter_rows())
    kept = duckdb.sql(f"SELECT count(*) FROM '{out}/shards/*.parquet'").fetchall()[0][0]
    assert kept == audit.filter(pl.col("label").is_in(["clean", "hard"])).height
    assert pl.read_parquet(out / "shards" / "*.parquet").height == kept
    embedded = duckdb.sql(f"SELECT count(*) FROM '{out}/embeddings/*.parquet'").fetchall()[0][0]
    assert embedded == audit.height  # pass 1's rows, an empty shard's file included
    scored = duckdb.sql(f"SELECT count(*) FROM '{out}/scores/*.parquet'").fetchall()[0][0]
    assert scored == audit.filter(pl.col("status").is_in(["ok", "duplicate"])).height


def _check_shards(out: Path, audit: pl.DataFrame) -> None:
    """The curated shards hold the kept pairs under their full keys."""
    kept = set(audit.filter(pl.col("label").is_in(["clean", "hard"]))["key"])
    names: set[str] = set()
    for tar_path in (out / "shards").glob("*.tar"):
        with tarfile.open(tar_path) as tar:
            names.update(m.name.split(".", 1)[0] for m in tar.getmembers())
    assert names == kept
