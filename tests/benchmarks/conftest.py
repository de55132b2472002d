"""Helpers shared by the benchmark tests: tiny cached embeddings and a quick config."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from pairsift.benchmarks.embedding_cache import CleanEmbeddings
from pairsift.models.config import PairsiftConfig


def _clean(n: int = 160, seed: int = 0) -> CleanEmbeddings:
    rng = np.random.default_rng(seed)
    groups = rng.integers(n // 2, size=n).astype(np.int64)
    z = rng.normal(size=(n // 2, 16))[groups]
    image = z @ rng.normal(size=(16, 48)) + 0.3 * rng.normal(size=(n, 48))
    text = z @ rng.normal(size=(16, 24)) + 0.3 * rng.normal(size=(n, 24))
    splits = np.where(np.arange(n) < n // 4, "test", "train")
    return CleanEmbeddings(image.astype(np.float32), text.astype(np.float32), {}, groups, splits)


def _tiny_cfg() -> PairsiftConfig:
    cfg = PairsiftConfig()
    cfg.train.epochs, cfg.train.warmup_epochs, cfg.train.batch_size = 3, 1, 64
    cfg.train.head_dim, cfg.train.num_negatives = 32, 16
    return cfg


@pytest.fixture
def make_clean() -> Callable[..., CleanEmbeddings]:
    """Clean cached embeddings whose views agree through a shared latent concept."""
    return _clean


@pytest.fixture
def tiny_cfg() -> Callable[[], PairsiftConfig]:
    """A config small enough for a benchmark job to train in about a second."""
    return _tiny_cfg
