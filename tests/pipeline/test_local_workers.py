"""Local pass 1 spreads over the cores, with torch's threads shared out among the processes."""

from __future__ import annotations

from pathlib import Path

import pytest

from pairsift.models.config import PairsiftConfig
from pairsift.pipeline import options as opt
from pairsift.pipeline.progress import FilePoller, StageProgress


@pytest.fixture
def four_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(opt, "usable_cores", lambda: 4)


def test_a_big_local_pass_one_gets_a_process_per_core(four_cores: None) -> None:
    big = 2 * opt.AUTO_WORKERS_MIN_BYTES
    chosen = opt.parallel_local_options(opt.make_options([]), shards=10, input_bytes=big)
    assert opt.local_workers(chosen) == 4
    for shards, size in ((2, big), (10, 2**20)):  # too few shards, too few bytes
        assert opt.local_workers(opt.parallel_local_options(opt.make_options([]), shards, size)) == 1
    cfg = opt.worker_threads(PairsiftConfig(), chosen)
    assert cfg.encoder.threads == 1 and PairsiftConfig().encoder.threads == 0  # a copy


def test_the_users_runner_choice_and_pinned_threads_are_kept(four_cores: None) -> None:
    one = opt.make_options(["--direct_num_workers", "1"])
    assert opt.local_workers(opt.parallel_local_options(one, 10, 2**40)) == 1
    two = opt.make_options(["--direct_num_workers", "2", "--direct_running_mode", "multi_processing"])
    assert opt.worker_threads(PairsiftConfig(), two).encoder.threads == 2
    pinned = PairsiftConfig.from_dict({"encoder": {"threads": 3}})
    assert opt.worker_threads(pinned, two).encoder.threads == 3
    remote = opt.make_options(["--runner", "DataflowRunner"])
    assert opt.parallel_local_options(remote, 10, 2**40) is remote
    assert opt.worker_threads(PairsiftConfig(), opt.make_options([])).encoder.threads == 0


def test_the_progress_poller_counts_files_as_they_appear(tmp_path: Path) -> None:
    paths = [str(tmp_path / f"{i}.parquet") for i in range(3)]
    progress = StageProgress("test", total=3)
    with FilePoller(progress, paths, lambda p: Path(p).exists(), every_s=0.01):
        Path(paths[1]).write_text("x")
        for _ in range(200):
            if progress.done:
                break
            import time

            time.sleep(0.01)
        assert progress.done == 1
        Path(paths[0]).write_text("x")
        Path(paths[2]).write_text("x")
    assert progress.done == 3
