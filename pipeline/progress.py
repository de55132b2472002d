"""Progress lines for long stages: done/total, rate and ETA, through logging."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger("pairsift.progress")


def format_seconds(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


@dataclass
class StageProgress:
    stage: str
    total: int
    done: int = 0
    unit: str = "items"
    started: float = field(default_factory=time.monotonic)
    _done_at_start: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self._done_at_start = self.done
        log.info("%s: starting, %d/%d %s", self.stage, self.done, self.total, self.unit)

    def advance(self, n: int = 1) -> None:
        self.done += n
        elapsed = time.monotonic() - self.started
        fresh = self.done - self._done_at_start
        rate = fresh / elapsed if elapsed > 0 else 0.0
        remaining = (self.total - self.done) / rate if rate > 0 else float("nan")
        eta = format_seconds(remaining) if remaining == remaining else "?"
        pct = 100.0 * self.done / self.total if self.total else 100.0
        log.info(
            "%s: %d/%d %s (%.0f%%), %.2f %s/s, ETA %s",
            self.stage, self.done, self.total, self.unit, pct, rate, self.unit, eta,
        )

    def finish(self) -> float:
        elapsed = time.monotonic() - self.started
        log.info("%s: done in %s", self.stage, format_seconds(elapsed))
        return elapsed


class FilePoller:
    """Advances ``progress`` as the files ``paths`` appear, from a background thread: a
    Beam job that runs all its shards at once (several worker processes) still shows them
    finishing one by one. ``exists`` is the storage check (local or fsspec)."""

    def __init__(self, progress: StageProgress, paths: list[str], exists: Callable[[str], bool],
                 every_s: float = 2.0) -> None:
        self.progress, self.exists, self.every_s = progress, exists, every_s
        self._waiting = list(paths)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="progress", daemon=True)

    def __enter__(self) -> FilePoller:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._check()  # what finished since the last look

    def _poll(self) -> None:
        while not self._stop.wait(self.every_s):
            self._check()

    def _check(self) -> None:
        found = {p for p in self._waiting if self.exists(p)}
        if found:
            self._waiting = [p for p in self._waiting if p not in found]
            self.progress.advance(len(found))
