"""Range reads of an input file: pass 2 copies the kept images' bytes without parsing the tar.

Ranges closer than the merge gap are read as one: ``MERGE_GAP`` on an object store (one
request, where a request costs far more than a few hundred KB), ``LOCAL_GAP`` on a local disk,
where a read costs a system call and a merged read would also copy the dropped pairs' bytes
between the kept ones (on a 50 % noisy synth shard, 79 MiB read for 7 MiB kept). A local file
is opened once and read with ``pread``; the bytes of the pairs pass 2 drops are never read
unless they sit within the gap of two kept ones.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pairsift.models.storage.atomic import filesystem

MERGE_GAP = 256 * 1024
LOCAL_GAP = 4 * 1024  # a page: on a 50 % noisy synth shard 20 ms a shard, against 49 ms merged


@dataclass
class Spans:
    """The reads that cover a set of ranges: span k is bytes [start[k], end[k]) of the file,
    and range i lies inside span ``of_range[i]``."""

    start: np.ndarray  # int64 [spans], in file order
    end: np.ndarray  # int64 [spans]
    of_range: np.ndarray  # int64 [ranges]

    def __len__(self) -> int:
        return int(self.start.shape[0])


def merged_spans(offsets: Sequence[int], sizes: Sequence[int], gap: int = MERGE_GAP) -> Spans:
    """The spans that cover the ranges, in file order: a range that starts within ``gap`` of
    the furthest end so far joins that span. Arrays only, no per-span lists: a shard's kept
    members make thousands of spans on a local disk."""
    start = np.asarray(offsets, dtype=np.int64)
    if not start.size:
        empty = np.zeros(0, dtype=np.int64)
        return Spans(empty, empty, empty)
    order = np.argsort(start, kind="stable")
    first = start[order]
    reach = np.maximum.accumulate(first + np.asarray(sizes, dtype=np.int64)[order])
    opens_span = np.concatenate([[True], first[1:] - reach[:-1] > gap])
    opens = np.flatnonzero(opens_span)
    closes = np.append(opens[1:], len(order)) - 1
    of_range = np.empty(len(order), dtype=np.int64)
    of_range[order] = np.cumsum(opens_span) - 1  # the span each range (in file order) joins
    return Spans(first[opens], reach[closes], of_range)


def _is_local(fs: object) -> bool:
    protocol = getattr(fs, "protocol", "")
    return bool({"file", "local"} & set([protocol] if isinstance(protocol, str) else protocol))


def _read_spans(path: str, spans: Spans) -> list[bytes | BaseException]:
    fs, p = filesystem(path)
    starts, ends = spans.start.tolist(), spans.end.tolist()
    if not _is_local(fs):
        return fs.cat_ranges([p] * len(starts), starts, ends)
    fd = os.open(p, os.O_RDONLY)
    try:
        return [os.pread(fd, end - start, start) for start, end in zip(starts, ends, strict=True)]
    finally:
        os.close(fd)


def read_ranges(path: str, offsets: Sequence[int], sizes: Sequence[int]) -> list[memoryview]:
    """The bytes of each (offset, size) range of ``path``, in the order given. Raises when
    the file ends early (it changed since the ranges were recorded)."""
    if not len(offsets):
        return []
    fs, _ = filesystem(path)
    spans = merged_spans(offsets, sizes, LOCAL_GAP if _is_local(fs) else MERGE_GAP)
    views: list[memoryview] = []
    for start, end, block in zip(spans.start.tolist(), spans.end.tolist(),
                                 _read_spans(path, spans), strict=True):
        if isinstance(block, BaseException):
            raise block
        if len(block) != end - start:
            raise EOFError(f"{path} ends at {start + len(block)}, before byte {end}")
        views.append(memoryview(block))
    within = (np.asarray(offsets, dtype=np.int64) - spans.start[spans.of_range]).tolist()
    return [views[k][r: r + n] for k, r, n in
            zip(spans.of_range.tolist(), within, sizes, strict=True)]
