"""Same input + config + seed → the same bytes, however the runner splits the work: Beam's
in-process runner with 1 worker, with 3 worker processes, with pass 1's own one process per
core, and the portable runner with an
EXTERNAL worker pool (jobs launched as on a remote runner)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from pairsift.benchmarks.portable import loopback_only, portable_cluster

# the files that hold timings: every other output must match byte for byte
TIMED = {"summary.json", "report.html", "_run.lock.json"}


def _digests(out: Path) -> dict[str, str]:
    return {
        str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(out.rglob("*")) if p.is_file() and p.name not in TIMED
    }


def test_bytes_do_not_depend_on_workers_or_runner(noisy_input, tmp_path, pinned_run, run_config,
                                                  e2e_threads, monkeypatch) -> None:
    from pairsift.pipeline import options

    def config():  # noqa: ANN202
        cfg = run_config()
        cfg.encoder.threads = e2e_threads  # every worker process, as the driver
        return cfg

    runs = {}
    pinned_run(str(noisy_input), str(tmp_path / "one"), config(),
               beam_args=["--direct_num_workers", "1"])
    runs["one worker"] = _digests(tmp_path / "one")
    with loopback_only():  # the worker processes' control servers
        pinned_run(str(noisy_input), str(tmp_path / "three"), config(),
                   beam_args=["--direct_num_workers", "3", "--direct_running_mode", "multi_processing"])
    runs["three workers"] = _digests(tmp_path / "three")
    # pass 1's own choice: one process per core for an input big enough (here: any)
    monkeypatch.setattr(options, "AUTO_WORKERS_MIN_BYTES", 0)
    with loopback_only():
        pinned_run(str(noisy_input), str(tmp_path / "auto"), config())
    runs["a process per core"] = _digests(tmp_path / "auto")
    with portable_cluster() as beam_args:
        pinned_run(str(noisy_input), str(tmp_path / "portable"), config(), beam_args=beam_args)
    runs["portable runner"] = _digests(tmp_path / "portable")

    reference = runs["one worker"]
    assert any(name.startswith("shards/") and name.endswith(".tar") for name in reference)
    assert any(name.startswith("audit/") for name in reference)
    for name, digests in runs.items():
        differ = sorted(k for k in reference.keys() | digests.keys() if reference.get(k) != digests.get(k))
        assert not differ, f"{name}: {differ} differ from the one-worker run"
