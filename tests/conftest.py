"""Fixtures every test package shares: one end-to-end `pairsift run` on a noisy synth set."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from pairsift.models.config import PairsiftConfig
from pairsift.pipeline.datasets.synth import SynthSource
from pairsift.pipeline.datasets.writer import build_dataset
from pairsift.pipeline.io.readers import discover_shards, read_shard
from pairsift.pipeline.io.shard_writer import ShardSample, write_shard


def e2e_config() -> PairsiftConfig:
    """The offline default towers at 128 px, a short fit: about 8 s for the 64-pair input,
    and a run that ranks its noise (detection AUC about 0.9, not the 0.5 of random towers)."""
    cfg = PairsiftConfig(seed=0)
    cfg.encoder.image_size = 128
    cfg.encoder.batch_size = 16
    cfg.train.warmup_epochs = 1
    cfg.train.epochs = 4
    cfg.train.batch_size = 32
    cfg.train.num_negatives = 16
    cfg.mixture.bins = 256
    cfg.train.final_min_pairs = 2  # 60 pairs: let OUT/model retrain on what is kept
    return cfg


@pytest.fixture
def run_config() -> Callable[[], PairsiftConfig]:
    """A fresh copy of the end-to-end run's config per call."""
    return e2e_config


@pytest.fixture(scope="session")
def noisy_input(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 synth pairs, half with shuffled captions, in 3 shards, plus a shard of 4 bad ones."""
    root = tmp_path_factory.mktemp("input")
    build_dataset(SynthSource(60, seed=1, image_size=64, image_format="jpg"), str(root),
                  noise=0.5, mode="caption", seed=1, shard_size=20)
    first = next(read_shard(discover_shards(str(root))[0]))
    bad = [
        ShardSample("corrupt_image", {"jpg": b"\xff\xd8 not really a jpeg", "txt": b"a red circle"}),
        ShardSample("empty_caption", {"jpg": first.image_bytes, "txt": b"   "}),
        ShardSample("dup_of_first", {"jpg": first.image_bytes, "txt": first.caption.encode()}),
        ShardSample("no_caption", {"jpg": first.image_bytes}),
    ]
    write_shard(str(root), "00099", bad)
    return root


E2E_THREADS = 2  # float reductions depend on the thread count: every byte-compared run pins it


def run_pinned(input_path: str, output: str, cfg: PairsiftConfig, **kwargs: Any) -> Any:
    """`pairsift run` with torch's thread count pinned to :data:`E2E_THREADS` (earlier tests
    in the session may have set another), so runs compared byte for byte agree."""
    from pairsift.pipeline.run import run

    previous = torch.get_num_threads()
    torch.set_num_threads(E2E_THREADS)
    try:
        return run(input_path, output, cfg, **kwargs)
    finally:
        torch.set_num_threads(previous)


@pytest.fixture
def pinned_run() -> Callable[..., Any]:
    return run_pinned


@pytest.fixture
def e2e_threads() -> int:
    return E2E_THREADS


@pytest.fixture(scope="session")
def finished_run(noisy_input: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run") / "out"
    run_pinned(str(noisy_input), str(out), e2e_config(), wave_size=2)
    return out


@pytest.fixture(scope="session")
def translated_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """80 synth pairs whose English captions are right and 40 % of whose Portuguese
    captions are broken (replaced, or words dropped), in 2 shards."""
    root = tmp_path_factory.mktemp("translated")
    build_dataset(SynthSource(80, seed=4, image_size=64, image_format="jpg"), str(root / "in"),
                  noise=0.4, mode="translation", seed=4, shard_size=40, ship_langs=["pt"],
                  noise_langs=["pt"])
    cfg = e2e_config()
    cfg.translate.target_langs = ["pt"]
    run_pinned(str(root / "in"), str(root / "out"), cfg)
    return root / "out"


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`pairsift demo` as a user runs it (a subprocess), at 400 pairs (about 20 s): the run
    whose report, audit and reasons the reviewer-facing tests read. Returns its OUT folder."""
    import subprocess
    import sys

    root = tmp_path_factory.mktemp("demo")
    done = subprocess.run([sys.executable, "-m", "pairsift.pipeline.cli", "demo", "--output", str(root),
                           "--pairs", "400"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return root / "run"
