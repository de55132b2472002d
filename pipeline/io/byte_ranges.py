"""Range reads of an input file: pass 2 copies the kept images' bytes without parsing the tar.

Ranges closer than ``MERGE_GAP`` are read as one (one request on an object store, where a
request costs far more than a few hundred KB); the rest are separate reads, so the bytes of
the pairs pass 2 drops are never fetched unless they sit between two kept ones.
"""

from __future__ import annotations

from collections.abc import Sequence

from pairsift.models.storage.atomic import filesystem

MERGE_GAP = 256 * 1024


def merged_spans(offsets: Sequence[int], sizes: Sequence[int], gap: int = MERGE_GAP) -> list[tuple[int, int, list[int]]]:
    """(start, end, [range indices]) of the spans that cover the ranges, in file order."""
    order = sorted(range(len(offsets)), key=lambda i: offsets[i])
    spans: list[tuple[int, int, list[int]]] = []
    for i in order:
        start, end = offsets[i], offsets[i] + sizes[i]
        if spans and start - spans[-1][1] <= gap:
            first, last, members = spans[-1]
            spans[-1] = (first, max(last, end), [*members, i])
        else:
            spans.append((start, end, [i]))
    return spans


def read_ranges(path: str, offsets: Sequence[int], sizes: Sequence[int]) -> list[memoryview]:
    """The bytes of each (offset, size) range of ``path``, in the order given. Raises when
    the file ends early (it changed since the ranges were recorded)."""
    if not offsets:
        return []
    fs, p = filesystem(path)
    spans = merged_spans(offsets, sizes)
    blocks = fs.cat_ranges([p] * len(spans), [s for s, _, _ in spans], [e for _, e, _ in spans])
    out: list[memoryview] = [memoryview(b"")] * len(offsets)
    for (start, end, members), block in zip(spans, blocks, strict=True):
        if isinstance(block, BaseException):
            raise block
        if len(block) != end - start:
            raise EOFError(f"{path} ends at {start + len(block)}, before byte {end}")
        view = memoryview(block)
        for i in members:
            out[i] = view[offsets[i] - start: offsets[i] - start + sizes[i]]
    return out
