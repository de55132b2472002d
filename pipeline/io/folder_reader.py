"""A folder of image files with sidecar ``.txt`` captions; no symlink out of the folder."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from pairsift.models.records import PairSample, Status, sanitize_key
from pairsift.models.storage.atomic import filesystem
from pairsift.pipeline.io.shards import (
    IMAGE_EXTENSIONS,
    InputShard,
    decode_caption,
    number_repeats,
    read_capped,
)


def folder_images(fs: fsspec.AbstractFileSystem, root: str) -> list[str]:
    found = fs.find(root)
    return sorted(p for p in found if p.rsplit(".", 1)[-1].lower() in IMAGE_EXTENSIONS)


def _escapes(fs: Any, root: str, path: str) -> bool:
    """Whether a local ``path`` resolves (through symlinks) outside the folder ``root``."""
    if not isinstance(fs, LocalFileSystem):
        return False
    real_root = os.path.realpath(root)
    return os.path.commonpath([real_root, os.path.realpath(path)]) != real_root


def _read_folder_file(fs: Any, root: str, path: str, shard: InputShard, caption: bool = False) -> bytes:
    """A file of the folder, refusing a symlink out of it and anything but a regular file."""
    if not shard.allow_outside and _escapes(fs, root, path):
        raise PermissionError("a symlink that leaves the input folder")
    if caption:
        return read_capped(fs, path, shard.max_caption_bytes, "limits.max_caption_bytes")
    return read_capped(fs, path, shard.max_image_bytes)


def folder_keys(images: list[str], root: str) -> list[str]:
    """A key per image of the folder: its path under the folder less the extension, with
    ``/`` and other odd characters as ``_``. Files that map to one key (``a.png`` and
    ``a.jpg``; ``sub/a.png`` and ``sub_a.png``) take ``_2``, ``_3``... in sorted path order,
    so no two pairs share a key and pass 2's join by key cannot mix them up."""
    return number_repeats(
        [sanitize_key(path[len(root) :].lstrip("/").rsplit(".", 1)[0]) for path in images]
    )


def read_folder_shard(shard: InputShard) -> Iterator[PairSample]:
    fs, root = filesystem(shard.path)
    listing = folder_images(fs, root)
    keys = folder_keys(listing, root)[shard.start : shard.stop]
    images = listing[shard.start : shard.stop]
    for offset, (image_path, key) in enumerate(zip(images, keys, strict=True)):
        rel = image_path[len(root) :].lstrip("/")
        sample = PairSample(key, shard.name, offset)
        sample.image_format = image_path.rsplit(".", 1)[-1].lower()
        caption_path = image_path.rsplit(".", 1)[0] + ".txt"
        try:
            sample.image_bytes = _read_folder_file(fs, root, image_path, shard)
        except PermissionError as exc:
            sample.error_status, sample.error = Status.UNSAFE_PATH.value, f"{rel}: {exc}"
        except OSError as exc:
            sample.error_status, sample.error = Status.READ_ERROR.value, f"cannot read {rel}: {exc}"
        if fs.exists(caption_path):
            try:
                caption = _read_folder_file(fs, root, caption_path, shard, caption=True)
                sample.caption = decode_caption(caption, sample)
            except PermissionError as exc:
                sample.caption = None
                if sample.error_status is None:
                    sample.error_status = Status.UNSAFE_PATH.value
                    sample.error = f"{rel.rsplit('.', 1)[0]}.txt: {exc}"
            except OSError as exc:
                if sample.error_status is None:
                    sample.error_status = Status.READ_ERROR.value
                    sample.error = f"cannot read the caption of {rel}: {exc}"
        elif sample.error_status is None:
            sample.error_status, sample.error = Status.MISSING_CAPTION.value, "no sidecar .txt"
        yield sample
