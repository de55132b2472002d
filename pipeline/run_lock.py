"""One run per output folder: a lock file naming the owner's host and pid.

A second `pairsift run` on the same OUT while the first is alive would interleave two runs'
outputs. The lock refuses it; a lock left by a killed run (its pid no longer alive on this
host) is taken over with a warning, so kill -9 followed by a rerun still resumes. A lock
from another host cannot be checked from here: it is refused with a message naming it.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager

from pairsift.models.storage.atomic import exists, filesystem, read_json, write_json

log = logging.getLogger(__name__)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def acquire(path: str) -> None:
    """Take the lock at ``path`` or raise SystemExit saying who holds it."""
    host, pid = socket.gethostname(), os.getpid()
    if exists(path):
        owner = read_json(path)
        owner_host, owner_pid = owner.get("host"), int(owner.get("pid", -1))
        if owner_host != host:
            raise SystemExit(
                f"output is locked by a run on {owner_host} (pid {owner_pid}): {path}; "
                "if that run is gone, delete the lock file and rerun"
            )
        if owner_pid != pid and _alive(owner_pid):
            raise SystemExit(f"output is in use by a live run (pid {owner_pid} on {host}): {path}")
        if owner_pid != pid:
            log.warning("taking over the lock of a run that is no longer alive (pid %d)", owner_pid)
    write_json(path, {"host": host, "pid": pid})


def release(path: str) -> None:
    if exists(path):
        fs, p = filesystem(path)
        fs.rm(p)


@contextmanager
def run_lock(path: str) -> Iterator[None]:
    """Hold the output's lock for the body; released however the body ends (a kill -9
    leaves it, and the next run on this host takes it over)."""
    acquire(path)
    try:
        yield
    finally:
        release(path)
