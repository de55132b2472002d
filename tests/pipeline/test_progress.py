"""Progress of long stages: a tqdm bar on a terminal, throttled log lines elsewhere."""

from __future__ import annotations

import io
import logging
import re
import sys
import time
from pathlib import Path

import pytest

from pairsift.pipeline import progress as prog
from pairsift.pipeline.progress import FilePoller, StageProgress, following_files

LINE = re.compile(r"^stage: (\d+)/10 shards \(\d+%\), [\d.]+ shards/s, ETA (\S+)$")


def progress_lines(caplog: pytest.LogCaptureFixture) -> list[re.Match[str]]:
    lines = [r.getMessage() for r in caplog.records if r.name == "pairsift.progress"]
    return [m for m in map(LINE.match, lines) if m]


def test_a_forced_bar_draws_count_rate_and_eta_on_stderr(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pairsift.progress")
    bar = StageProgress("stage", total=10, done=2, unit="shards", bar=True)
    time.sleep(0.01)  # some time has passed: tqdm shows a rate, not "?"
    bar.advance(3)
    bar.finish()
    err = capsys.readouterr().err
    # desc, count, elapsed<ETA and rate, as tqdm writes them
    assert re.search(r"stage: +50%\|.*\| 5/10 \[\d\d:\d\d<\d\d:\d\d, +[\d.]+(shards/s|s/shards)\]",
                     err), err
    assert err.endswith("\n")  # closed, and left on screen
    assert not progress_lines(caplog)  # no plain lines beside the bar
    assert any("stage: done in" in r.getMessage() for r in caplog.records)


def test_the_module_switch_and_the_terminal_choose_the_mode(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(prog, "BAR", True)
    StageProgress("forced", total=2).finish()
    assert "forced:" in capsys.readouterr().err
    monkeypatch.setattr(prog, "BAR", None)
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert StageProgress("piped", total=2).bar is False  # a StringIO is no terminal
    assert StageProgress("asked", total=2, bar=True).bar is True
    tty = io.StringIO()
    tty.isatty = lambda: True  # type: ignore[method-assign]
    monkeypatch.setattr(sys, "stderr", tty)
    on_tty = StageProgress("tty", total=2)
    on_tty.advance(2)
    on_tty.finish()
    assert on_tty.bar is True and "2/2" in tty.getvalue()


def test_log_lines_print_above_an_open_bar(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    handler = logging.StreamHandler(sys.stderr)  # the CLI's console handler
    handler.setFormatter(logging.Formatter("LOG %(message)s"))
    root.addHandler(handler)
    try:
        bar = StageProgress("stage", total=4, unit="shards", bar=True)
        bar.advance()
        assert handler.stream is not sys.stderr  # swapped while the bar is open
        logging.getLogger("pairsift.test").warning("between")
        bar.finish()
        assert handler.stream is sys.stderr  # and given back
    finally:
        root.removeHandler(handler)
    err = capsys.readouterr().err
    # the bar is wiped ("\r", blanks, "\r"), the record printed, the bar drawn again under it
    assert "\rLOG between\n" in err, repr(err)
    assert err.index("LOG between") < err.rindex("1/4"), repr(err)


def test_plain_lines_carry_done_total_and_eta(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pairsift.progress")
    stage = StageProgress("stage", total=10, done=4, unit="shards", bar=False)
    time.sleep(0.01)
    stage.advance(2)
    lines = progress_lines(caplog)
    assert [m.group(1) for m in lines] == ["6"]
    assert re.fullmatch(r"\d+m\d\ds", lines[0].group(2))  # a rate, so a finite ETA
    assert any(r.getMessage() == "stage: starting, 4/10 shards" for r in caplog.records)


def test_plain_lines_are_throttled_and_the_last_is_always_logged(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO, logger="pairsift.progress")
    monkeypatch.setattr(prog, "LOG_EVERY_S", 3600.0)
    stage = StageProgress("stage", total=10, unit="shards", bar=False)
    for _ in range(9):
        stage.advance()
    assert [m.group(1) for m in progress_lines(caplog)] == ["1"]  # the first only
    stage.advance()  # the total: logged at once
    stage.advance(0)  # no step: no line
    assert [m.group(1) for m in progress_lines(caplog)] == ["1", "10"]

    caplog.clear()
    short = StageProgress("stage", total=10, unit="shards", bar=False)
    for _ in range(7):  # ends early (a stage that stops before its total)
        short.advance()
    short.finish()
    assert [m.group(1) for m in progress_lines(caplog)] == ["1", "7"]
    short.finish()  # a second finish logs nothing more
    assert sum("done in" in r.getMessage() for r in caplog.records) == 1


def test_a_failed_stage_closes_its_bar_without_a_done_line(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pairsift.progress")
    with pytest.raises(RuntimeError), StageProgress("stage", total=3, bar=True) as bar:
        bar.advance()
        raise RuntimeError("job failed")
    assert bar._bar is None and capsys.readouterr().err.endswith("\n")
    assert not any("done in" in r.getMessage() for r in caplog.records)


def wait_for(condition: object, tries: int = 500) -> None:
    for _ in range(tries):
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.01)


def test_the_poller_advances_as_files_appear(tmp_path: Path) -> None:
    paths = [str(tmp_path / f"{i}.parquet") for i in range(4)]
    stage = StageProgress("stage", total=5, done=1, unit="shards", bar=False)
    with FilePoller(stage, paths, lambda p: Path(p).exists(), every_s=0.01):
        assert stage.done == 1
        Path(paths[2]).write_text("x")
        wait_for(lambda: stage.done > 1)
        assert stage.done == 2
        Path(paths[0]).write_text("x")
        Path(paths[3]).write_text("x")
        wait_for(lambda: stage.done > 3)
        assert stage.done == 4
    assert stage.done == 4  # the missing file is never counted
    Path(paths[1]).write_text("x")
    assert stage.done == 4  # nor counted after the poller stopped


def test_the_poller_redraws_the_bar_while_no_file_appears(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stage = StageProgress("stage", total=1, unit="shards", bar=True)
    assert capsys.readouterr().err.count("0/1") == 1  # drawn once on opening
    redrawn: list[str] = []
    with FilePoller(stage, [str(tmp_path / "never")], lambda p: Path(p).exists(), every_s=0.01):
        wait_for(lambda: redrawn.append(capsys.readouterr().err) or "0/1" in redrawn[-1])
    stage.finish()
    assert "0/1" in redrawn[-1] and stage.done == 0  # elapsed and ETA move, nothing counted


def test_following_files_without_polling_counts_at_the_end(tmp_path: Path) -> None:
    paths = [str(tmp_path / f"{i}.parquet") for i in range(3)]
    looked: list[str] = []

    def exists(path: str) -> bool:
        looked.append(path)
        return True

    stage = StageProgress("stage", total=3, bar=False)
    with following_files(stage, paths, exists, poll=False):
        assert stage.done == 0
    assert stage.done == 3 and not looked
    failed = StageProgress("stage", total=3, bar=False)
    with pytest.raises(RuntimeError), following_files(failed, paths, exists, poll=False):
        raise RuntimeError("job failed")
    assert failed.done == 0
    polled = StageProgress("stage", total=3, bar=False)
    with following_files(polled, paths, exists, poll=True, every_s=0.01):
        pass
    assert polled.done == 3 and looked
