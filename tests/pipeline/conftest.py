"""Fixtures of tests/pipeline: a corpus of hostile and odd inputs, one folder per input
kind, with the audit status each pair must get. Files planted outside the inputs hold a
marker that must never reach OUT.

``build_corpus(root)`` writes ``root/{tars,tables,folder}`` and ``root/outside`` and records
the expected ``(source_shard, key) -> status`` of every pair, per input kind.
"""

from __future__ import annotations

import io
import json
import os
import struct
import tarfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pairsift.pipeline.datasets.synth import SynthSource
from pairsift.pipeline.datasets.writer import build_dataset
from pairsift.pipeline.io.readers import discover_shards, read_shard

MARKER = "PLANTED-OUTSIDE-7f3a"  # the content of every file outside the inputs
BIG_SHARD_MEMBERS = 10_000


@dataclass
class Corpus:
    """Where each input kind lives, and the status every one of its pairs must end with."""

    root: Path
    outside: Path
    expected: dict[str, dict[tuple[str, str], str]] = field(default_factory=dict)


def good_pairs(root: Path, count: int) -> list[tuple[bytes, str]]:
    """``count`` distinct, clean synth pairs (JPEG bytes, caption): enough for the fit."""
    build_dataset(SynthSource(count, seed=3, image_size=64, image_format="jpg"), str(root),
                  noise=0.0, seed=3, shard_size=count)
    return [(s.image_bytes, s.caption) for s in read_shard(discover_shards(str(root))[0])]


def image_bytes(mode: str, size: tuple[int, int] = (48, 40), fmt: str = "PNG", **save: object) -> bytes:
    rng = np.random.default_rng(sum(map(ord, mode + fmt)))
    if mode == "I;16":
        image = Image.fromarray(rng.integers(0, 65535, size[::-1], dtype=np.uint16))
    else:
        image = Image.fromarray(rng.integers(0, 255, (*size[::-1], 3), dtype=np.uint8)).convert(mode)
    out = io.BytesIO()
    image.save(out, fmt, **save)
    return out.getvalue()


def animated_gif() -> bytes:
    frames = [Image.new("RGB", (32, 32), color) for color in ((250, 0, 0), (0, 250, 0), (0, 0, 250))]
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    return out.getvalue()


def exif_rotated_jpeg() -> bytes:
    image = Image.new("RGB", (60, 30), (10, 120, 200))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° on display
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif.tobytes())
    return out.getvalue()


def bomb_png(side: int = 20_000) -> bytes:
    """A valid PNG header for a ``side``×``side`` image with almost no data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def _member(tar: tarfile.TarFile, name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE,
            link: str = "") -> None:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mtime = kind, link, 0
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def _tar(path: Path, members: list[tuple], gz: bool = False) -> None:
    with tarfile.open(path, "w:gz" if gz else "w", format=tarfile.PAX_FORMAT) as tar:
        for member in members:
            _member(tar, *member)


def _pair(key: str, image: bytes, caption: bytes | str, ext: str = "jpg") -> list[tuple]:
    text = caption.encode() if isinstance(caption, str) else caption
    return [(f"{key}.{ext}", image), (f"{key}.txt", text)]


def build_tars(corpus: Corpus, good: list[tuple[bytes, str]]) -> None:
    """Why one piece: one table of tar cases, each beside the status it must get."""
    d = corpus.root / "tars"
    d.mkdir()
    expect: dict[tuple[str, str], str] = {}
    long_key = "k" * 140
    members, cases = [], [
        # (key, image, caption, ext, status)
        (long_key, good[0][0], good[0][1], "jpg", "ok"),
        ("shared_key", good[1][0], good[1][1], "jpg", "ok"),
        ("gif_frames", animated_gif(), "three coloured frames", "gif", "ok"),
        ("cmyk", image_bytes("CMYK", fmt="JPEG"), "a cmyk jpeg", "jpg", "ok"),
        ("one_pixel", image_bytes("RGB", (1, 1)), "a single pixel", "png", "ok"),
        ("webp", image_bytes("RGB", fmt="WEBP"), "a webp image", "webp", "ok"),
        ("png_named_jpg", image_bytes("RGB"), "a png under a jpg name", "jpg", "ok"),
        ("text_named_png", b"hello, I am not an image", "lying extension", "png", "decode_error"),
        ("nul_inside", good[2][0], "a caption with a\x00nul byte inside it", "jpg", "ok"),
        ("nul_only", good[3][0], "\x00" * 24, "jpg", "bad_caption"),
        ("bad_utf8", good[4][0], b"\xff\xfe\xfa\xfb", "jpg", "bad_caption"),
        ("huge_caption", good[5][0], b"w" * (2 * 2**20), "jpg", "bad_caption"),
        ("bomb", bomb_png(), "a decompression bomb", "png", "decode_error"),
        ("truncated", good[6][0][: len(good[6][0]) // 2], "half a jpeg", "jpg", "decode_error"),
        ("zero_bytes", b"", "an empty image file", "jpg", "missing_image"),
        ("sixteen_bit", image_bytes("I;16"), "a 16-bit grey png", "png", "ok"),
        ("exif_rotated", exif_rotated_jpeg(), "a rotated photo", "jpg", "ok"),
        ("palette_alpha", image_bytes("P", fmt="PNG", transparency=0), "palette with alpha", "png", "ok"),
        ("grey_alpha", image_bytes("LA"), "grey with alpha", "png", "ok"),
        ("whitespace", good[7][0], "  \n\t ", "jpg", "empty_caption"),
        ("over_image_cap", image_bytes("RGB", (900, 900)), "a big noisy png", "png", "read_error"),
    ]
    for key, image, caption, ext, status in cases:
        members += _pair(key, image, caption, ext)
        expect[("hostile", key)] = status
    members += [
        ("../evil.jpg", good[8][0]), ("../evil.txt", b"climbs out"),  # one row, not two
        ("/abs.jpg", good[8][0]),
        ("link_only.jpg", b"", tarfile.SYMTYPE, "/etc/passwd"),
        ("link_only.txt", b"", tarfile.LNKTYPE, "abs.jpg"),
        ("fifo.jpg", b"", tarfile.FIFOTYPE), ("fifo.txt", b"a fifo"),
        ("device.jpg", b"", tarfile.CHRTYPE),
        ("caption_only.txt", b"no image here"),
        ("image_only.jpg", good[9][0]),
        ("sub/in_dir.jpg", good[10][0]), ("sub/in_dir.txt", good[10][1].encode()),
        ("bad_json.jpg", good[11][0]), ("bad_json.txt", good[11][1].encode()),
        ("bad_json.json", b"{not json"),
        ("exact_copy.jpg", good[1][0]), ("exact_copy.txt", good[1][1].encode()),
    ]
    expect.update({("hostile", "___evil"): "read_error", ("hostile", "_abs"): "read_error",
                   ("hostile", "link_only"): "read_error", ("hostile", "fifo"): "read_error",
                   ("hostile", "device"): "read_error", ("hostile", "caption_only"): "missing_image",
                   ("hostile", "image_only"): "missing_caption", ("hostile", "sub_in_dir"): "ok",
                   ("hostile", "bad_json"): "ok", ("hostile", "exact_copy"): "duplicate"})
    _tar(d / "hostile.tar", members)
    plain = [(f"g{i:02d}", *good[12 + i]) for i in range(14)]
    _tar(d / "good.tar", [m for key, img, cap in plain for m in _pair(key, img, cap)]
         + _pair("shared_key", good[26][0], good[26][1]))
    expect.update({("good", key): "ok" for key, _, _ in plain} | {("good", "shared_key"): "ok"})
    _tar(d / "x.tar", _pair("x1", *good[27]))
    _tar(d / "x.b.tar", _pair("x1", *good[28]))
    _tar(d / "gz.tgz", _pair("gz1", *good[29]) + _pair("gz2", *good[30]), gz=True)
    expect.update({("x", "x1"): "ok", ("x_b", "x1"): "ok", ("gz", "gz1"): "ok", ("gz", "gz2"): "ok"})
    _tar(d / "empty.tar", [])
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a.jpg", good[31][0])
    (d / "zipped.tar").write_bytes(buffer.getvalue())
    expect[("zipped", "zipped_unreadable_0")] = "read_error"
    big = [(f"c{i:05d}.txt", b"a caption whose image never came") for i in range(BIG_SHARD_MEMBERS - 10)]
    for i in range(5):
        big += _pair(f"p{i}", *good[32 + i])
    _tar(d / "big.tar", big)
    expect.update({("big", f"c{i:05d}"): "missing_image" for i in range(BIG_SHARD_MEMBERS - 10)})
    expect.update({("big", f"p{i}"): "ok" for i in range(5)})
    corpus.expected["tars"] = expect


def build_tables(corpus: Corpus, good: list[tuple[bytes, str]]) -> None:
    d = corpus.root / "tables"
    (d / "images").mkdir(parents=True)
    for i, (image, _) in enumerate(good):
        (d / "images" / f"{i:03d}.jpg").write_bytes(image)
    secret = corpus.outside / "secret.png"
    rows: list[tuple[str | None, str | None, str | None, str]] = [
        (f"t{i:02d}", f"images/{i:03d}.jpg", good[i][1], "ok") for i in range(16)]
    rows += [
        ("absolute", str(secret), "an absolute path", "unsafe_path"),
        ("climbs", "../outside/secret.png", "a relative climb", "unsafe_path"),
        ("file_url", f"file://{secret}", "a file url", "unsafe_path"),
        ("chained", f"simplecache::file://{secret}", "a chained url", "unsafe_path"),
        ("dev_zero", "/dev/zero", "an endless device", "unsafe_path"),
        ("closed_port", "http://127.0.0.1:9/x.jpg", "nothing listens", "connection_error"),
        ("not_there", "images/missing.jpg", "a file that is not there", "read_error"),
        ("no_caption", "images/016.jpg", None, "missing_caption"),
        ("no_path", None, "a row without an image", "missing_image"),
        ("a.b c", "images/017.jpg", good[17][1], "ok"),
        ("line\nbreak\tand tab", "images/018.jpg", good[18][1], "ok"),
        ("dupkey", "images/019.jpg", good[19][1], "ok"),
        ("dupkey", "images/020.jpg", good[20][1], "ok"),
        ("shared", "images/021.jpg", good[21][1], "ok"),
    ]
    pq.write_table(pa.table({"key": [r[0] for r in rows], "path": [r[1] for r in rows],
                             "caption": [r[2] for r in rows]}), d / "rows.parquet")
    keys = {"a.b c": "a_b_c", "line\nbreak\tand tab": "line_break_and_tab"}
    expect = {("rows", keys.get(r[0], r[0])): r[3] for r in rows}
    expect[("rows", "dupkey_dup1")] = "ok"
    lines = [json.dumps({"key": f"j{i}", "path": f"images/{22 + i:03d}.jpg", "caption": good[22 + i][1]})
             for i in range(3)]
    lines[1:1] = ['{"key": "broken", "path": "images/001.jpg", "caption": "cut', "[1, 2, 3]"]
    (d / "lines.jsonl").write_text("\n".join(lines) + "\n")
    expect.update({("lines", "j0"): "ok", ("lines", "j1"): "ok", ("lines", "j2"): "ok",
                   ("lines", "lines_000000001"): "read_error", ("lines", "lines_000000002"): "read_error"})
    (d / "broken.parquet").write_bytes(b"PAR1 not a parquet file PAR1")
    expect[("broken", "broken_unreadable_0")] = "read_error"
    sheet = ("key,path,caption\n" + f"shared,images/025.jpg,{good[25][1]}\n"
             + f"s1,images/026.jpg,{good[26][1]}\n" + "s_huge,images/027.jpg," + "h" * (2 * 2**20) + "\n")
    (d / "sheet.csv").write_text(sheet)
    expect.update({("sheet", "shared"): "ok", ("sheet", "s1"): "ok", ("sheet", "s_huge"): "bad_caption"})
    corpus.expected["tables"] = expect


def build_folder(corpus: Corpus, good: list[tuple[bytes, str]]) -> None:
    d = corpus.root / "folder"
    (d / "sub").mkdir(parents=True)
    expect: dict[tuple[str, str], str] = {}

    def pair(stem: str, image: bytes, caption: str | None, status: str, key: str | None = None) -> None:
        (d / f"{stem}").write_bytes(image)
        if caption is not None:
            (d / f"{stem.rsplit('.', 1)[0]}.txt").write_text(caption)
        expect[("00000", key or stem.rsplit(".", 1)[0].replace("/", "_"))] = status

    for i in range(16):
        pair(f"f{i:02d}.jpg", good[i][0], good[i][1], "ok")
    pair("samestem.jpg", good[16][0], good[16][1], "ok")
    (d / "samestem.png").write_bytes(image_bytes("RGB"))
    expect[("00000", "samestem_2")] = "ok"
    pair("sub/a.jpg", good[17][0], good[17][1], "ok")
    pair("sub_a.jpg", good[18][0], good[18][1], "ok", key="sub_a_2")
    pair("UPPER.JPG", good[19][0], good[19][1], "ok")
    pair("nocap.jpg", good[20][0], None, "missing_caption")
    pair("fake.gif", b"GIF89a but then nothing", "a gif that is not", "decode_error")
    os.mkfifo(d / "fifo.jpg")
    (d / "fifo.txt").write_text("a fifo where an image should be")
    expect[("00000", "fifo")] = "read_error"
    (d / "dircap.jpg").write_bytes(good[21][0])
    (d / "dircap.txt").mkdir()
    expect[("00000", "dircap")] = "read_error"
    (d / "linked_caption.jpg").write_bytes(good[22][0])
    (d / "linked_caption.txt").symlink_to(corpus.outside / "secret.txt")
    (d / "linked_image.jpg").symlink_to(corpus.outside / "secret.png")
    (d / "linked_image.txt").write_text("an image linked from outside")
    expect.update({("00000", "linked_caption"): "unsafe_path", ("00000", "linked_image"): "unsafe_path"})
    corpus.expected["folder"] = expect


def build_corpus(root: Path) -> Corpus:
    corpus = Corpus(root, root / "outside")
    corpus.outside.mkdir(parents=True)
    (corpus.outside / "secret.txt").write_text(MARKER)
    secret = Image.new("RGB", (40, 40), (1, 2, 3))
    buffer = io.BytesIO()
    secret.save(buffer, "PNG", pnginfo=_marker_info())
    (corpus.outside / "secret.png").write_bytes(buffer.getvalue())
    good = good_pairs(root / "source", 40)
    build_tars(corpus, good)
    build_tables(corpus, good)
    build_folder(corpus, good)
    return corpus


def _marker_info() -> object:
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("comment", MARKER)
    return info


@pytest.fixture(scope="module")
def hostile_corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    return build_corpus(tmp_path_factory.mktemp("hostile"))


@pytest.fixture(scope="session")
def describe_dataflow_job():  # noqa: ANN201
    """(job message, staged files) of a Dataflow dry run's result, as Beam would submit it:
    Beam's own DataflowApplicationClient builds the environment; only its upload method is
    replaced by one that keeps the staged files in memory (``--no_auth``: no credentials)."""
    def describe(result: Any) -> tuple[Any, dict[str, int]]:
        from apache_beam.runners.dataflow.internal import apiclient

        job = result.job
        client = apiclient.DataflowApplicationClient(job.options)
        staged: dict[str, int] = {}

        def keep(path: str, name: str, stream: Any, *args: Any, **kwargs: Any) -> None:
            staged[f"{path}/{name}"] = len(stream.read())

        client.stage_file = keep  # the one method that would upload to GCS
        client.create_job_description(job)
        return job.proto, staged

    return describe
