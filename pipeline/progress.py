"""Progress lines for long stages: done/total, rate and ETA, through logging."""

from __future__ import annotations

import logging
import time
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
