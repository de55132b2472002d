"""The fast tar header parser lists what tarfile lists, and refuses what it cannot follow."""

from __future__ import annotations

import io
import tarfile

import pytest

from pairsift.pipeline.io.tar_stream import TarFormatError, iter_members, read_data


def _archive(fmt: int) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tar:
        entries = [("a.jpg", b"x" * 700), ("dir/" + "d" * 90 + "/" + "n" * 60 + ".txt", b"deep"),
                   ("k" * 140 + ".jpg", b"long"), ("\u00e9t\u00e9.txt", b"utf-8 name"), ("empty.txt", b"")]
        for name, data in entries:
            if fmt == tarfile.USTAR_FORMAT and (name.startswith("k") or not name.isascii()):
                continue
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        folder = tarfile.TarInfo("folder")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
        link = tarfile.TarInfo("link.jpg")
        link.type, link.linkname = tarfile.SYMTYPE, "a.jpg"
        tar.addfile(link)
    return out.getvalue()


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
def test_members_and_offsets_match_tarfile(fmt: int) -> None:
    raw = _archive(fmt)
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        want = [(m.name, m.size, m.offset_data, "file" if m.isfile() else "dir" if m.isdir() else "other",
                 tar.extractfile(m).read() if m.isfile() else None) for m in tar.getmembers()]
    got = []
    for member, reader in iter_members(io.BytesIO(raw)):
        data = read_data(member, reader) if member.isfile() and member.name != "a.jpg" else None
        got.append((member.name, member.size, member.offset_data, member.kind, data))
    want = [(n, s, o, k, None if n == "a.jpg" else d) for n, s, o, k, d in want]  # a.jpg: skipped unread
    assert got == want


def test_a_corrupt_header_after_the_first_is_an_error_not_an_end() -> None:
    raw = bytearray(_archive(tarfile.PAX_FORMAT))
    raw[512 + 1024 + 10] ^= 0xFF  # inside the second member's header (a.jpg is 700 bytes: 2 blocks)
    with pytest.raises(TarFormatError, match="checksum"):
        list(iter_members(io.BytesIO(bytes(raw))))


def test_empty_and_cut_files_are_errors() -> None:
    with pytest.raises(TarFormatError, match="empty"):
        list(iter_members(io.BytesIO(b"")))
    raw = _archive(tarfile.PAX_FORMAT)
    with pytest.raises(EOFError):
        for member, reader in iter_members(io.BytesIO(raw[:600])):
            read_data(member, reader)
