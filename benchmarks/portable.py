"""A local Beam cluster for the portable runner: a job service and an EXTERNAL worker pool,
in a process of their own, listening on 127.0.0.1 only.

``pairsift run`` then launches its jobs the way it does on a remote runner (PortableRunner,
``--environment_type EXTERNAL``): the work runs in other processes, so the tests can compare
its bytes with the in-process runner's, and `pairsift bench driver-memory` can measure the
launching process alone.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

LOOPBACK = "127.0.0.1"
JOB_TIMEOUT_S = 7 * 24 * 3600


@contextmanager
def loopback_only() -> Iterator[None]:
    """Every gRPC server started inside binds 127.0.0.1, not every interface (Beam's own
    servers ask for ``[::]``)."""
    from grpc._server import _Server

    original = _Server.add_insecure_port

    def bind_loopback(self: Any, address: str) -> int:
        host, _, port = address.rpartition(":")
        if host in ("[::]", "0.0.0.0", "", "localhost"):
            address = f"{LOOPBACK}:{port}"
        return original(self, address)

    _Server.add_insecure_port = bind_loopback  # type: ignore[method-assign]
    try:
        yield
    finally:
        _Server.add_insecure_port = original  # type: ignore[method-assign]


def serve(port_file: str) -> None:
    """The cluster process: start both services, write their ports, serve until killed."""
    from apache_beam.runners.portability.local_job_service import LocalJobServicer
    from apache_beam.runners.worker.worker_pool_main import BeamFnExternalWorkerPoolServicer

    with loopback_only():
        jobs = LocalJobServicer()
        jobs.get_service_address = lambda: LOOPBACK  # type: ignore[method-assign]
        job_port = jobs.start_grpc_server(0)
        pool_address, _server = BeamFnExternalWorkerPoolServicer.start(use_process=True)
        ports = {"job_port": job_port, "pool_port": int(pool_address.rsplit(":", 1)[1])}
        Path(port_file).write_text(json.dumps(ports), encoding="utf-8")
        while True:
            time.sleep(3600)


@contextmanager
def portable_cluster(timeout_s: float = 60.0, log: Path | None = None) -> Iterator[list[str]]:
    """Start the cluster process; yield the Beam flags that send jobs to it; stop it (and the
    SDK workers it started) on exit. ``log``: where its (and its workers') output goes."""
    with tempfile.TemporaryDirectory(prefix="pairsift-cluster-") as scratch:
        port_file = Path(scratch) / "ports.json"
        code = f"from pairsift.benchmarks.portable import serve; serve({str(port_file)!r})"
        # the pool starts each SDK worker as `python` from PATH: this interpreter's
        env = {**os.environ, "PATH": os.pathsep.join([os.path.dirname(sys.executable),
                                                      os.environ.get("PATH", "")])}
        sink = log.open("w", encoding="utf-8") if log else subprocess.DEVNULL
        child = subprocess.Popen([sys.executable, "-c", code], start_new_session=True, env=env,
                                 stdout=sink, stderr=sink)
        try:
            ports = _wait_for_ports(port_file, child, timeout_s)
            yield ["--runner", "PortableRunner",
                   "--job_endpoint", f"{LOOPBACK}:{ports['job_port']}",
                   "--environment_type", "EXTERNAL",
                   "--environment_config", f"{LOOPBACK}:{ports['pool_port']}",
                   # Beam puts this deadline (300 s by default) on a job's state stream: a
                   # longer job would end DEADLINE_EXCEEDED while still running
                   "--job_server_timeout", str(JOB_TIMEOUT_S)]
        finally:
            try:
                os.killpg(child.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            child.wait(timeout=30)
            if log:
                sink.close()


def _wait_for_ports(port_file: Path, child: subprocess.Popen, timeout_s: float) -> dict[str, int]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise RuntimeError(f"the local Beam cluster exited at start (code {child.returncode})")
        if port_file.exists() and port_file.stat().st_size:
            return json.loads(port_file.read_text(encoding="utf-8"))
        time.sleep(0.1)
    raise TimeoutError(f"the local Beam cluster did not start within {timeout_s:.0f} s")
