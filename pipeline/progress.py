"""Progress of long stages: done/total, rate and ETA, in one of two modes.

On a terminal (``sys.stderr.isatty()``) a stage draws a tqdm bar on stderr (count, rate,
ETA), and log records of this process print above it. Elsewhere (a log file, a pipe, CI)
it logs plain lines ``stage: done/total unit (pct), rate, ETA``: the first and the last
always, the ones between at most every :data:`LOG_EVERY_S` seconds.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from tqdm import tqdm

log = logging.getLogger("pairsift.progress")

BAR: bool | None = None  # every stage's mode: True a bar, False log lines, None detect
LOG_EVERY_S = 5.0  # plain mode: the least time between two progress lines of a stage


def format_seconds(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def on_terminal() -> bool:
    stream = sys.stderr
    return bool(stream is not None and getattr(stream, "isatty", lambda: False)())


@dataclass
class StageProgress:
    """One stage's progress: :meth:`advance` as steps finish, :meth:`finish` at the end (or
    use it as a context manager). ``bar``: True a tqdm bar, False log lines, None the module's
    :data:`BAR`, else whether stderr is a terminal."""

    stage: str
    total: int
    done: int = 0
    unit: str = "items"
    started: float = field(default_factory=time.monotonic)
    bar: bool | None = None
    _done_at_start: int = field(init=False, default=0)
    _bar: tqdm | None = field(init=False, default=None, repr=False)
    _above_bar: contextlib.ExitStack | None = field(init=False, default=None, repr=False)
    _logged_at: float | None = field(init=False, default=None)
    _unlogged: bool = field(init=False, default=False)
    _finished: float | None = field(init=False, default=None)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self._done_at_start = self.done
        if self.bar is None:
            self.bar = BAR if BAR is not None else on_terminal()
        if not self.bar:
            log.info("%s: starting, %d/%d %s", self.stage, self.done, self.total, self.unit)
            return
        self._above_bar = contextlib.ExitStack()
        self._above_bar.enter_context(logs_above_bars())
        self._bar = tqdm(desc=self.stage, total=self.total, initial=self.done, unit=self.unit,
                         file=sys.stderr, dynamic_ncols=True, leave=True, smoothing=0)

    def __enter__(self) -> StageProgress:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_exc: object) -> None:
        if exc_type is None:
            self.finish()
        else:  # the stage failed: close the bar, no "done" line
            self._close()

    def advance(self, n: int = 1) -> None:
        if not n:
            return
        with self._lock:
            self.done += n
            if self._bar is not None:
                self._bar.update(n)
                return
            now = time.monotonic()
            due = self._logged_at is None or now - self._logged_at >= LOG_EVERY_S
            if due or self.done >= self.total:
                self._log_line(now)
            else:
                self._unlogged = True

    def tick(self) -> None:
        """Redraw the bar, so its elapsed time and ETA move between steps (plain: nothing)."""
        with self._lock:
            if self._bar is not None:
                self._bar.refresh()

    def finish(self) -> float:
        with self._lock:
            if self._finished is not None:
                return self._finished
            now = time.monotonic()
            if self._unlogged:  # the last step, held back by the throttle
                self._log_line(now)
            self._finished = now - self.started
        self._close()
        log.info("%s: done in %s", self.stage, format_seconds(self._finished))
        return self._finished

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self._above_bar is not None:
            self._above_bar.close()
            self._above_bar = None

    def _log_line(self, now: float) -> None:
        elapsed = now - self.started
        fresh = self.done - self._done_at_start
        rate = fresh / elapsed if elapsed > 0 else 0.0
        remaining = (self.total - self.done) / rate if rate > 0 else float("nan")
        eta = format_seconds(remaining) if remaining == remaining else "?"
        pct = 100.0 * self.done / self.total if self.total else 100.0
        log.info(
            "%s: %d/%d %s (%.0f%%), %.2f %s/s, ETA %s",
            self.stage, self.done, self.total, self.unit, pct, rate, self.unit, eta,
        )
        self._logged_at, self._unlogged = now, False


class _AboveBars:
    """A console stream whose writes go through ``tqdm.write``: a log record clears the open
    bars, prints, and the bars are drawn again under it."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        tqdm.write(text, file=self.stream, end="")
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


@contextlib.contextmanager
def logs_above_bars() -> Iterator[None]:
    """While open, the root logger's console handlers (stderr, stdout) print above the bars
    instead of through them; their formats, levels and filters stay."""
    consoles = (sys.stderr, sys.stdout)
    swapped = [
        (handler, handler.stream) for handler in logging.getLogger().handlers
        if isinstance(handler, logging.StreamHandler) and handler.stream in consoles
    ]
    for handler, stream in swapped:
        handler.setStream(_AboveBars(stream))  # type: ignore[arg-type]
    try:
        yield
    finally:
        for handler, stream in swapped:
            handler.setStream(stream)


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
            self.progress.tick()

    def _check(self) -> None:
        found = {p for p in self._waiting if self.exists(p)}
        if found:
            self._waiting = [p for p in self._waiting if p not in found]
            self.progress.advance(len(found))


@contextlib.contextmanager
def following_files(progress: StageProgress, paths: list[str], exists: Callable[[str], bool],
                    poll: bool, every_s: float = 2.0) -> Iterator[None]:
    """Around a Beam job that writes ``paths``: with ``poll`` a :class:`FilePoller` counts them
    as they appear (a local runner, where a look is a cheap stat); without, the count moves
    once the job has ended (a remote runner: no storage call per file while it runs)."""
    if poll:
        with FilePoller(progress, paths, exists, every_s):
            yield
        return
    yield
    progress.advance(len(paths))
