"""Readers: every input kind, and bad input that must become rows with reasons."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pairsift.models.records import Status
from pairsift.pipeline.io.readers import discover_shards, expand_braces, read_shard
from pairsift.pipeline.io.shard_writer import ShardSample, add_tar_member, write_shard


def png_bytes(color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buf, format="PNG")
    return buf.getvalue()


def test_expand_braces() -> None:
    assert expand_braces("d/{00..02}.tar") == ["d/00.tar", "d/01.tar", "d/02.tar"]
    assert expand_braces("plain.tar") == ["plain.tar"]


def test_webdataset_tars_roundtrip(tmp_path: Path) -> None:
    samples = [
        ShardSample(f"k{i}", {"png": png_bytes(), "txt": f"caption {i}".encode(), "json": json.dumps({"is_noisy": i == 1}).encode()})
        for i in range(3)
    ]
    write_shard(str(tmp_path), "00000", samples)
    shards = discover_shards(str(tmp_path))
    assert [s.name for s in shards] == ["00000"]
    read = list(read_shard(shards[0]))
    assert [s.key for s in read] == ["k0", "k1", "k2"]
    assert [s.index for s in read] == [0, 1, 2]
    assert read[1].caption == "caption 1" and read[1].meta == {"is_noisy": True}
    assert all(s.error_status is None and s.image_bytes for s in read)


def _raw_tar(path: Path, members: list[tuple[str, bytes]]) -> None:
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            add_tar_member(tar, name, data)


def test_bad_members_become_error_samples(tmp_path: Path) -> None:
    _raw_tar(
        tmp_path / "00000.tar",
        [
            ("ok.png", png_bytes()), ("ok.txt", b"a red square"),
            ("noimg.txt", b"caption without image"),
            ("nocap.png", png_bytes()),
            ("../evil.png", png_bytes()),
            ("bin.png", png_bytes()), ("bin.txt", b"\xff\xfe\x00bad"),
            ("ok.png", png_bytes()), ("ok.txt", b"the same key twice"),
        ],
    )
    read = list(read_shard(discover_shards(str(tmp_path))[0]))
    by_key = {s.key: s for s in read}
    assert by_key["ok"].error_status is None
    assert by_key["noimg"].error_status == Status.MISSING_IMAGE.value
    assert by_key["nocap"].error_status == Status.MISSING_CAPTION.value
    assert by_key["bin"].error_status == Status.BAD_CAPTION.value
    unsafe = [s for s in read if s.error_status == Status.READ_ERROR.value]
    assert len(unsafe) == 1 and "unsafe" in unsafe[0].error
    assert by_key["ok_dup1"].caption == "the same key twice"  # kept, under a unique key
    assert len({s.key for s in read}) == len(read) == 6


def test_truncated_tar_keeps_read_samples_and_reports(tmp_path: Path) -> None:
    write_shard(str(tmp_path), "00000", [ShardSample(f"k{i}", {"png": png_bytes(), "txt": b"x" * 3000}) for i in range(5)])
    tar_path = tmp_path / "00000.tar"
    data = tar_path.read_bytes()
    tar_path.write_bytes(data[: len(data) // 2])
    read = list(read_shard(discover_shards(str(tmp_path))[0]))
    assert read[-1].error_status == Status.READ_ERROR.value
    assert "unreadable" in read[-1].error
    assert all(s.error_status is None for s in read[:-2])


def test_table_inputs(tmp_path: Path) -> None:
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.png").write_bytes(png_bytes())
    table = pa.table({"path": ["imgs/a.png", "imgs/missing.png"], "caption": ["a red square", "gone"], "is_noisy": [False, True]})
    pq.write_table(table, tmp_path / "pairs.parquet")
    shards = discover_shards(str(tmp_path / "pairs.parquet"))
    read = list(read_shard(shards[0]))
    assert read[0].image_bytes and read[0].caption == "a red square" and read[0].meta["is_noisy"] is False
    assert read[1].error_status == Status.READ_ERROR.value
    csv_path = tmp_path / "pairs.csv"
    csv_path.write_text("path,caption\nimgs/a.png,hello\n")
    assert [s.caption for s in read_shard(discover_shards(str(csv_path))[0])] == ["hello"]


def test_folder_input(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(png_bytes())
    (tmp_path / "a.txt").write_text("a red square")
    (tmp_path / "b.png").write_bytes(png_bytes())
    read = list(read_shard(discover_shards(str(tmp_path))[0]))
    assert read[0].caption == "a red square" and read[0].error_status is None
    assert read[1].error_status == Status.MISSING_CAPTION.value


def test_missing_input_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        discover_shards(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no input found"):
        discover_shards(str(tmp_path / "empty"))


def test_shard_writer_is_deterministic(tmp_path: Path) -> None:
    samples = [ShardSample("k0", {"png": png_bytes(), "txt": b"x"}, {"key": "k0", "status": "ok"})]
    write_shard(str(tmp_path / "a"), "00000", samples)
    write_shard(str(tmp_path / "b"), "00000", samples)
    for name in ("00000.tar", "00000.parquet", "00000_stats.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    with pytest.raises(ValueError, match="must not contain"):
        write_shard(str(tmp_path / "c"), "00000", [ShardSample("a.b", {"txt": b"x"})])


def test_long_keys_get_a_pax_header_and_short_ones_stay_plain_ustar(tmp_path: Path) -> None:
    import io
    import tarfile

    import webdataset as wds

    key = "k" * 200  # USTAR stops at 100 (name) + 155 (prefix) without a slash to split on
    write_shard(str(tmp_path / "long"), "00000", [ShardSample(key, {"txt": b"a caption"})])
    with tarfile.open(tmp_path / "long" / "00000.tar") as tar:
        assert tar.getnames() == [f"{key}.txt"]
    loaded = list(wds.WebDataset(str(tmp_path / "long" / "00000.tar"), shardshuffle=False))
    assert loaded[0]["__key__"] == key and loaded[0]["txt"] == b"a caption"
    # a short name is written exactly as a ustar writer would, so existing shards keep their bytes
    write_shard(str(tmp_path / "short"), "00000", [ShardSample("k0", {"txt": b"x"})])
    ustar = io.BytesIO()
    with tarfile.open(fileobj=ustar, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo("k0.txt")
        info.size, info.mtime, info.mode, info.uname, info.gname = 1, 0, 0o644, "", ""
        tar.addfile(info, io.BytesIO(b"x"))
    assert (tmp_path / "short" / "00000.tar").read_bytes() == ustar.getvalue()


def test_a_broken_jsonl_line_costs_only_its_own_pair(tmp_path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (8, 8), (200, 10, 10)).save(tmp_path / "a.png")
    lines = [
        json.dumps({"path": "a.png", "caption": "a red square"}),
        '{"path": "a.png", "caption": "cut off',
        "[1, 2]",
        json.dumps({"path": "a.png", "caption": "again"}),
    ]
    (tmp_path / "pairs.jsonl").write_bytes(("\n".join(lines) + "\n").encode() + b"\xff\xfe\n")
    samples = [s for shard in discover_shards(str(tmp_path)) for s in read_shard(shard)]
    assert len(samples) == 5 and len({s.key for s in samples}) == 5
    ok = [s for s in samples if s.error_status is None]
    assert [s.caption for s in ok] == ["a red square", "again"]
    bad = [s for s in samples if s.error_status is not None]
    assert [s.error_status for s in bad] == ["read_error"] * 3
    assert "line 2: not valid JSON" in bad[0].error
    assert "line 3: a JSON list" in bad[1].error
    assert "line 5: not UTF-8" in bad[2].error


def test_table_rows_cannot_read_outside_the_table(tmp_path: Path) -> None:
    import os

    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "outside.png").write_bytes(png_bytes())
    (secret / "passwd").write_text("root:x:0:0 SECRET")
    table_dir = tmp_path / "table"
    (table_dir / "imgs").mkdir(parents=True)
    (table_dir / "imgs" / "a.png").write_bytes(png_bytes())
    os.mkfifo(table_dir / "imgs" / "fifo.png")
    rows = {
        "ok": "imgs/a.png",
        "absolute": str(secret / "passwd"),
        "dotdot": "../secret/outside.png",
        "file_url": f"file://{secret / 'outside.png'}",
        "chained": f"simplecache::file://{secret / 'outside.png'}",
        "memory": "memory://x.png",
        "fifo": "imgs/fifo.png",
    }
    pq.write_table(pa.table({"key": list(rows), "path": list(rows.values()),
                             "caption": ["c"] * len(rows)}), table_dir / "pairs.parquet")
    shard = discover_shards(str(table_dir / "pairs.parquet"))[0]
    read = {s.key: s for s in read_shard(shard)}  # the FIFO must not block
    assert read["ok"].image_bytes == png_bytes() and read["ok"].error_status is None
    for key in ("absolute", "dotdot", "file_url", "chained", "memory"):
        assert read[key].error_status == "unsafe_path", key
        assert read[key].image_bytes is None and "SECRET" not in (read[key].error or "")
    assert read["fifo"].error_status == "read_error" and "regular file" in read["fifo"].error
    # the user's opt-out reads them; a size cap still bounds every read
    import dataclasses

    opened = dataclasses.replace(shard, allow_outside=True, max_image_bytes=10)
    read = {s.key: s for s in read_shard(opened)}
    assert read["absolute"].error_status == "read_error" and "cap" in read["absolute"].error
    roomy = {s.key: s for s in read_shard(dataclasses.replace(shard, allow_outside=True))}
    assert roomy["dotdot"].image_bytes == png_bytes()


def test_folder_input_follows_no_symlink_out_of_the_folder(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("SECRET caption")
    (outside / "img.png").write_bytes(png_bytes())
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "a.png").write_bytes(png_bytes())
    (folder / "a.txt").symlink_to(outside / "secret.txt")
    (folder / "b.png").symlink_to(outside / "img.png")
    (folder / "b.txt").write_text("fine")
    (folder / "c.png").write_bytes(png_bytes())
    (folder / "c.txt").write_text("inside")
    read = {s.key: s for shard in discover_shards(str(folder)) for s in read_shard(shard)}
    assert read["a"].error_status == "unsafe_path" and read["a"].caption is None
    assert read["b"].error_status == "unsafe_path" and read["b"].image_bytes is None
    assert read["c"].error_status is None and read["c"].caption == "inside"
    assert all("SECRET" not in (s.caption or "") + (s.error or "") for s in read.values())


def test_gzipped_tars_are_read_and_shard_names_stay_apart(tmp_path: Path) -> None:
    import gzip
    import shutil

    samples = [ShardSample("k0", {"png": png_bytes(), "txt": b"a"})]
    for name in ("x", "x.b", "y b", "y_b"):
        write_shard(str(tmp_path / "w"), name, samples)
        shutil.move(tmp_path / "w" / f"{name}.tar", tmp_path / f"{name}.tar")
    with open(tmp_path / "x.tar", "rb") as src, gzip.open(tmp_path / "z.tar.gz", "wb") as dst:
        dst.write(src.read())
    shutil.copy(tmp_path / "z.tar.gz", tmp_path / "t.tgz")
    shards = discover_shards(str(tmp_path))
    names = [s.name for s in shards]
    assert len(names) == len(set(names)) == 6
    assert {"x", "x_b", "z", "t"} <= set(names) and {"y_b", "y_b_2"} == set(names) - {"x", "x_b", "z", "t"}
    for shard in shards:
        read = list(read_shard(shard))
        assert [s.key for s in read] == ["k0"] and read[0].caption == "a", shard.path


def test_tar_pairs_of_unsafe_or_non_file_members_get_exactly_one_row(tmp_path: Path) -> None:
    import io
    import tarfile

    def member(tar: tarfile.TarFile, name: str, data: bytes | None = None,
               kind: bytes = tarfile.REGTYPE, link: str = "") -> None:
        info = tarfile.TarInfo(name)
        info.type, info.linkname = kind, link
        info.size = len(data or b"")
        tar.addfile(info, io.BytesIO(data or b""))

    path = tmp_path / "hostile.tar"
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        member(tar, "../evil.png", png_bytes())
        member(tar, "../evil.txt", b"escape")
        member(tar, "onlylink.png", kind=tarfile.SYMTYPE, link="/etc/passwd")
        member(tar, "fifo.png", kind=tarfile.FIFOTYPE)
        member(tar, "good.png", png_bytes())
        member(tar, "good.txt", b"a caption")
        member(tar, "good.json", kind=tarfile.SYMTYPE, link="/etc/hostname")
    samples = list(read_shard(discover_shards(str(path))[0]))
    by_key = {s.key: s for s in samples}
    assert len(samples) == len(by_key) == 4  # one row per pair, none lost
    evil = [s for s in samples if s.error and "unsafe" in s.error]
    assert len(evil) == 1 and evil[0].error_status == "read_error"
    for key in ("onlylink", "fifo"):
        assert by_key[key].error_status == "read_error"
        assert "non-file members" in by_key[key].error
    assert by_key["good"].error_status is None and by_key["good"].caption == "a caption"


def test_folder_files_that_sanitise_alike_get_their_own_keys(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    for name in ("samestem.png", "samestem.jpg", "sub/a.png", "sub_a.png"):
        (tmp_path / name).write_bytes(png_bytes())
    for stem in ("samestem", "sub/a", "sub_a"):
        (tmp_path / f"{stem}.txt").write_text(f"caption of {stem}")
    read = [s for shard in discover_shards(str(tmp_path)) for s in read_shard(shard)]
    keys = [s.key for s in read]
    assert len(keys) == len(set(keys)) == 4
    assert set(keys) == {"samestem", "samestem_2", "sub_a", "sub_a_2"}
    by_key = {s.key: s for s in read}
    assert by_key["sub_a"].caption == "caption of sub/a"  # sorted: sub/a before sub_a
    assert by_key["sub_a_2"].caption == "caption of sub_a"


def test_a_tar_member_over_its_cap_is_not_read(tmp_path: Path) -> None:
    import dataclasses

    big_image = png_bytes() + b"\0" * 5000  # trailing bytes: still a PNG, but over 4 KB
    samples = [ShardSample("big_caption", {"png": png_bytes(), "txt": b"x" * 5000}),
               ShardSample("big_image", {"png": big_image, "txt": b"fine too"}),
               ShardSample("small", {"png": png_bytes(), "txt": b"fine"})]
    write_shard(str(tmp_path), "00000", samples)
    shard = dataclasses.replace(discover_shards(str(tmp_path / "00000.tar"))[0],
                                max_image_bytes=4096, max_caption_bytes=1000)
    read = {s.key: s for s in read_shard(shard)}
    assert read["big_caption"].error_status == "bad_caption"
    assert "limits.max_caption_bytes" in read["big_caption"].error
    assert read["big_caption"].caption is None  # the 5000-byte caption was never read in
    assert read["big_image"].error_status == "read_error"
    assert "limits.max_image_bytes" in read["big_image"].error
    assert read["big_image"].image_bytes is None
    assert read["small"].error_status is None and read["small"].caption == "fine"


def test_table_and_folder_captions_over_the_cap_are_not_taken_in(tmp_path: Path) -> None:
    import dataclasses

    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "a.png").write_bytes(png_bytes())
    pq.write_table(pa.table({"path": ["a.png", "a.png"], "caption": ["y" * 3000, "short"],
                             "key": ["long", "short"]}), tmp_path / "t" / "t.parquet")
    table = dataclasses.replace(discover_shards(str(tmp_path / "t" / "t.parquet"))[0],
                                max_caption_bytes=1000)
    rows = {s.key: s for s in read_shard(table)}
    assert rows["long"].error_status == "bad_caption" and rows["long"].caption is None
    assert "3000 bytes" in rows["long"].error and rows["short"].error_status is None
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "a.png").write_bytes(png_bytes())
    (tmp_path / "f" / "a.txt").write_text("z" * 3000)
    folder = dataclasses.replace(discover_shards(str(tmp_path / "f"))[0], max_caption_bytes=1000)
    (sample,) = list(read_shard(folder))
    assert sample.caption is None and "limits.max_caption_bytes" in sample.error


def test_keys_keep_the_input_spelling_and_never_collide(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(png_bytes())
    keys = ["a.b c", "a_b_c", "a.b c", "a_b_c_dup1", "line\nbreak", "k" * 300]
    pq.write_table(pa.table({"path": ["a.png"] * len(keys), "caption": ["c"] * len(keys),
                             "key": keys}), tmp_path / "t.parquet")
    rows = list(read_shard(discover_shards(str(tmp_path / "t.parquet"))[0]))
    assert len({s.key for s in rows}) == len(keys)  # unique, however the input spelled them
    assert [s.meta.get("input_key", s.key) for s in rows] == keys  # the full input key, kept
    assert rows[0].key == "a_b_c" and rows[1].key == "a_b_c_dup1"


def test_a_table_that_cannot_be_parsed_is_one_row_not_a_failed_shard(tmp_path: Path) -> None:
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 this is not parquet at all")
    (sample,) = list(read_shard(discover_shards(str(tmp_path / "broken.parquet"))[0]))
    assert sample.error_status == "read_error" and sample.key == "broken_unreadable_0"
    assert "shard unreadable after 0 samples" in sample.error


def test_an_unreachable_url_row_is_a_read_error_not_a_crash(tmp_path: Path) -> None:
    # port 9 on loopback refuses at once
    pq.write_table(pa.table({"url": ["http://127.0.0.1:9/x.png"], "caption": ["c"],
                             "key": ["remote"]}), tmp_path / "t.parquet")
    (sample,) = list(read_shard(discover_shards(str(tmp_path / "t.parquet"))[0]))
    assert sample.key == "remote" and sample.error_status == "connection_error"
    assert "http://127.0.0.1:9/x.png" in sample.error
