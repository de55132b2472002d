"""One run per output folder, and a resumed run's input compared without trailing slashes."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pairsift.pipeline.run import normalise_input
from pairsift.pipeline.run_lock import acquire, release, run_lock


def test_a_live_owner_refuses_a_second_run(tmp_path: Path) -> None:
    lock = tmp_path / "out" / "_run.lock.json"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        lock.parent.mkdir()
        lock.write_text(json.dumps({"host": socket.gethostname(), "pid": sleeper.pid}))
        with pytest.raises(SystemExit, match=f"live run \\(pid {sleeper.pid}"):
            acquire(str(lock))
    finally:
        sleeper.kill()
        sleeper.wait()
    assert json.loads(lock.read_text())["pid"] == sleeper.pid  # untouched while refused


def test_a_dead_owners_lock_is_taken_over(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock = tmp_path / "_run.lock.json"
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid}))
    with caplog.at_level(logging.WARNING), run_lock(str(lock)):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert "no longer alive" in caplog.text
    assert not lock.exists()  # released at the end


def test_another_hosts_lock_is_refused_with_its_name(tmp_path: Path) -> None:
    lock = tmp_path / "_run.lock.json"
    lock.write_text(json.dumps({"host": "elsewhere", "pid": 1}))
    with pytest.raises(SystemExit, match="locked by a run on elsewhere"):
        acquire(str(lock))
    release(str(lock))
    assert not lock.exists()


def test_lock_is_released_when_the_run_fails(tmp_path: Path) -> None:
    lock = tmp_path / "_run.lock.json"
    with pytest.raises(RuntimeError), run_lock(str(lock)):
        raise RuntimeError("stage failed")
    assert not lock.exists()


@pytest.mark.parametrize("given,recorded", [
    ("data/in/", "data/in"), ("data/in", "data/in"), ("gs://bucket/in//", "gs://bucket/in"),
    ("/", "/"), ("memory://", "memory://"),
])
def test_input_paths_are_recorded_without_trailing_slashes(given: str, recorded: str) -> None:
    assert normalise_input(given) == recorded
