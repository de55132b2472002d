"""Small inline thumbnails of chosen pairs, read from the input once per shard.

A gallery names pairs by (source shard, key). Each shard is read once for all of its chosen
pairs: by the byte ranges pass 1 recorded (an uncompressed input tar, or pass 1's copy of a
table shard's images), or, for inputs without ranges (compressed tars, folders), by one
streaming read of the shard that stops when every chosen key is found. Each image is capped
in bytes and pixels, decoded with Pillow's draft mode, shrunk to ``THUMB_PX`` and re-encoded
as a small JPEG data URI, so a report's size is bounded by the number of thumbnails alone.
"""

from __future__ import annotations

import base64
import io
import logging
from collections import defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

from PIL import Image

from pairsift.models.storage.atomic import exists, read_json
from pairsift.models.storage.tables import read_table
from pairsift.pipeline.io.byte_ranges import read_ranges
from pairsift.pipeline.io.readers import InputShard, read_shard
from pairsift.pipeline.layout import RunLayout

log = logging.getLogger(__name__)

THUMB_PX = 112  # longest side of a thumbnail
MAX_IMAGE_BYTES = 16 * 2**20  # a larger image is not thumbnailed
MAX_PIXELS = 64_000_000  # nor one that decodes to more pixels than this
PairId = tuple[str, str]  # (source_shard, key)


def thumbnail_uri(data: bytes | memoryview) -> str | None:
    """A JPEG data URI of ``data`` shrunk to ``THUMB_PX``; None when it is not a readable
    image within the caps."""
    if len(data) > MAX_IMAGE_BYTES:
        return None
    try:
        with Image.open(io.BytesIO(bytes(data))) as image:
            if image.width * image.height > MAX_PIXELS:
                return None
            image.draft("RGB", (THUMB_PX * 2, THUMB_PX * 2))
            image.thumbnail((THUMB_PX, THUMB_PX))
            out = io.BytesIO()
            image.convert("RGB").save(out, "JPEG", quality=72)
    except Exception:  # noqa: BLE001 - an unreadable image shows as "no thumbnail"
        return None
    return "data:image/jpeg;base64," + base64.b64encode(out.getvalue()).decode("ascii")


def input_shards(layout: RunLayout) -> dict[str, InputShard]:
    """The run's input shards by name, as the run recorded them (none for a run from
    embeddings without image shards)."""
    if not exists(layout.input_shards):
        return {}
    return {s.name: s for s in (InputShard(**d) for d in read_json(layout.input_shards))}


def _range_source(shard: InputShard, layout: RunLayout) -> str | None:
    from pairsift.pipeline.pass2 import range_source

    return range_source(shard, layout)


def shard_images(shard: InputShard, keys: set[str], layout: RunLayout) -> dict[str, bytes | memoryview]:
    """The image bytes of ``keys`` in ``shard`` (missing keys are left out), read once."""
    source = _range_source(shard, layout)
    if source is not None and exists(layout.embeddings_file(shard.name)):
        rows = read_table(layout.embeddings_file(shard.name),
                          columns=["key", "member_offset", "member_size"]).to_pylist()
        chosen = [r for r in rows if r["key"] in keys and r.get("member_offset") is not None]
        if chosen or not keys:
            data = read_ranges(source, [r["member_offset"] for r in chosen],
                               [r["member_size"] for r in chosen])
            return {r["key"]: d for r, d in zip(chosen, data, strict=True)}
    found: dict[str, bytes | memoryview] = {}
    for sample in read_shard(shard):
        if sample.key in keys and sample.image_bytes is not None:
            found[sample.key] = sample.image_bytes
            if len(found) == len(keys):
                break
    return found


def thumbnails(layout: RunLayout, pairs: Iterable[PairId], workers: int = 4) -> dict[PairId, str]:
    """Data URIs of ``pairs``' thumbnails, shard by shard (a shard that cannot be read, or a
    pair whose image is unreadable, simply has none: the report says so)."""
    shards = input_shards(layout)
    wanted: dict[str, set[str]] = defaultdict(set)
    for shard_name, key in pairs:
        if shard_name in shards:
            wanted[shard_name].add(key)

    def one(name: str) -> dict[PairId, str]:
        try:
            images = shard_images(shards[name], wanted[name], layout)
        except Exception as exc:  # noqa: BLE001 - the report is built without these pictures
            log.warning("report: no thumbnails from shard %s (%s: %s)", name, type(exc).__name__, exc)
            return {}
        uris = {(name, key): thumbnail_uri(data) for key, data in images.items()}
        return {pair: uri for pair, uri in uris.items() if uri is not None}

    out: dict[PairId, str] = {}
    with ThreadPoolExecutor(max(1, workers)) as pool:
        for found in pool.map(one, sorted(wanted)):
            out.update(found)
    return out
