"""Atomic outputs through fsspec: write under a temporary name, rename when complete.

A stage checks ``exists(final)`` to skip finished work, so a killed run that is restarted
never sees a half-written file under its final name.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterator
from typing import IO, Any

import fsspec


def filesystem(path: str) -> tuple[fsspec.AbstractFileSystem, str]:
    fs, _, paths = fsspec.get_fs_token_paths(path)
    return fs, paths[0]


def join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *[p.strip("/") for p in parts]])


def exists(path: str) -> bool:
    fs, p = filesystem(path)
    return fs.exists(p)


def makedirs(path: str) -> None:
    fs, p = filesystem(path)
    fs.makedirs(p, exist_ok=True)


@contextlib.contextmanager
def atomic_open(path: str, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open ``path`` for writing; it appears under its name only if the block succeeds."""
    fs, final = filesystem(path)
    parent = final.rsplit("/", 1)[0] if "/" in final else "."
    fs.makedirs(parent, exist_ok=True)
    tmp = f"{parent}/{TEMP_PREFIX}{uuid.uuid4().hex}-{final.rsplit('/', 1)[-1]}"
    try:
        with fs.open(tmp, mode) as handle:
            yield handle
        fs.mv(tmp, final)
    except BaseException:
        with contextlib.suppress(Exception):
            fs.rm(tmp)
        raise


TEMP_PREFIX = ".tmp-"


def remove(path: str) -> None:
    fs, p = filesystem(path)
    if fs.exists(p):
        fs.rm(p)


def remove_orphans(root: str) -> int:
    """Delete the temp files a killed writer left under ``root`` (``atomic_open`` names them
    ``.tmp-...``); call it only while no writer runs (under the run lock). Returns how many."""
    fs, p = filesystem(root)
    if not fs.exists(p):
        return 0
    orphans = [n for n in fs.find(p) if os.path.basename(n).startswith(TEMP_PREFIX)]
    for name in orphans:
        fs.rm(name)
    return len(orphans)


def write_json(path: str, data: Any) -> None:
    with atomic_open(path, "w") as handle:
        json.dump(data, handle, indent=2, sort_keys=True, default=_json_default)
        handle.write("\n")


def read_json(path: str) -> Any:
    fs, p = filesystem(path)
    with fs.open(p, "r") as handle:
        return json.load(handle)


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def list_files(path: str, suffix: str) -> list[str]:
    """Sorted files under ``path`` (one level) ending in ``suffix``, skipping temp files."""
    fs, p = filesystem(path)
    if not fs.exists(p):
        return []
    names = [n for n in fs.ls(p, detail=False) if n.endswith(suffix)]
    names = [n for n in names if not os.path.basename(n).startswith(TEMP_PREFIX)]
    protocol = path.split("://", 1)[0] + "://" if "://" in path else ""
    return sorted(protocol + n if protocol and not n.startswith(protocol) else n for n in names)
