"""Pass 2 by byte ranges: pass 1's recorded ranges, the tar writer, and the same output bytes
as reading the shard again."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import polars as pl
import pytest

from pairsift.pipeline.io.byte_ranges import merged_spans, read_ranges
from pairsift.pipeline.io.readers import InputShard, read_shard
from pairsift.pipeline.io.shard_writer import TarStream, add_tar_member


def _members() -> list[tuple[str, bytes]]:
    return [("a.jpg", b"x" * 1000), ("a.txt", b"one"), ("b" * 100, b""), ("c" * 101 + ".jpg", b"y" * 513),
            ("\u00fc.txt", b"z"), ("k_1.json", b"{}" * 300), ("d.jpg", b"w" * 512)]


@pytest.mark.parametrize("flush_bytes", [TarStream.FLUSH_BYTES, 1, 1500])
def test_the_tar_writer_writes_the_bytes_tarfile_writes(
    flush_bytes: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(TarStream, "FLUSH_BYTES", flush_bytes)  # blocks flushed mid-member run
    reference = io.BytesIO()
    with tarfile.open(fileobj=reference, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in _members():
            add_tar_member(tar, name, data)
    written = io.BytesIO()
    stream = TarStream(written)
    for name, data in _members():
        stream.add(name, memoryview(data))
    stream.close()
    assert written.getvalue() == reference.getvalue()


def test_pass_one_records_where_each_image_lies_in_the_tar(tmp_path: Path) -> None:
    path = tmp_path / "s.tar"
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in _members():
            add_tar_member(tar, name, data)
    samples = [s for s in read_shard(InputShard("tar", str(path), "s")) if s.image_bytes]
    assert len(samples) == 3  # a, the long-named (pax header) c..., d
    raw = path.read_bytes()
    for sample in samples:
        start = sample.member_offset
        assert raw[start:start + sample.member_size] == sample.image_bytes
    got = read_ranges(str(path), [s.member_offset for s in samples][::-1],
                      [s.member_size for s in samples][::-1])
    assert [bytes(g) for g in got] == [s.image_bytes for s in samples][::-1]


def test_a_compressed_tar_records_no_ranges(tmp_path: Path) -> None:
    path = tmp_path / "s.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, data in _members()[:2]:
            add_tar_member(tar, name, data)
    sample = next(read_shard(InputShard("tar", str(path), "s")))
    assert sample.image_bytes and sample.member_offset is None


def test_near_ranges_merge_into_one_read_and_far_ones_do_not() -> None:
    spans = merged_spans([0, 2000, 10_000_000, 1500], [1000, 100, 10, 100], gap=4096)
    assert spans.start.tolist() == [0, 10_000_000] and spans.end.tolist() == [2100, 10_000_010]
    assert spans.of_range.tolist() == [0, 0, 1, 0]
    # a range inside a longer one keeps the span's end at the furthest reach
    nested = merged_spans([100, 0, 5000], [10, 1000, 10], gap=0)
    assert nested.start.tolist() == [0, 5000] and nested.end.tolist() == [1000, 5010]
    assert nested.of_range.tolist() == [0, 0, 1]
    assert len(merged_spans([], [])) == 0


def test_a_range_past_the_end_of_the_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "short"
    path.write_bytes(b"abc")
    with pytest.raises(EOFError):
        read_ranges(str(path), [1], [10])


def _copy_run(finished_run: Path, noisy_input: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the finished run and its input, with pass 2 and what follows undone."""
    inp, out = tmp_path / "input", tmp_path / "out"
    shutil.copytree(noisy_input, inp)
    shutil.copytree(finished_run, out)
    record = json.loads((out / "config.json").read_text())
    record["input"] = str(inp)
    (out / "config.json").write_text(json.dumps(record))
    listed = (out / "input_shards.json").read_text().replace(str(noisy_input), str(inp))
    (out / "input_shards.json").write_text(listed)
    for folder in ("shards", "audit"):
        shutil.rmtree(out / folder)
    for name in ("_final_done.json", "tally.json", "final_sample.parquet"):
        (out / "fit" / name).unlink(missing_ok=True)
    return inp, out


def test_reading_the_shards_again_gives_the_bytes_of_the_range_copy(
    noisy_input: Path, finished_run: Path, tmp_path: Path, run_config, pinned_run,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pairsift.pipeline import pass2

    inp, out = _copy_run(finished_run, noisy_input, tmp_path)
    monkeypatch.setattr(pass2, "ranged_rows", lambda rows: False)
    pinned_run(str(inp), str(out), run_config(), wave_size=2)
    for folder in ("shards", "audit"):
        for path in sorted((finished_run / folder).iterdir()):
            assert (out / folder / path.name).read_bytes() == path.read_bytes(), path.name


def test_a_kept_image_whose_bytes_changed_is_a_reread_error(
    noisy_input: Path, finished_run: Path, tmp_path: Path, run_config, pinned_run,
) -> None:
    inp, out = _copy_run(finished_run, noisy_input, tmp_path)
    audit = pl.read_parquet(finished_run / "audit" / "*.parquet")
    kept = audit.filter(pl.col("label").is_in(["clean", "hard"]) & (pl.col("source_shard") == "00000"))
    key = kept["key"][0]
    tar = inp / "00000.tar"
    sample = next(s for s in read_shard(InputShard("tar", str(tar), "00000")) if s.key == key)
    raw = bytearray(tar.read_bytes())
    raw[sample.member_offset + 5] ^= 0xFF  # same size, other bytes
    tar.write_bytes(bytes(raw))
    with pytest.raises(SystemExit, match="could not be re-read"):
        pinned_run(str(inp), str(out), run_config(), wave_size=2)
    again = pl.read_parquet(out / "audit" / "*.parquet")
    row = again.filter(pl.col("key") == key).row(0, named=True)
    assert row["status"] == "reread_error" and "CRC-32" in row["error"]
    assert again.height == audit.height
    assert again.filter(pl.col("status") == "reread_error").height == 1
