"""Heads, scoring state, consistency anchors and the retrieval model live under any fsspec
path: on Dataflow the fit writes them to the run's bucket, where the workers read them."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch

from pairsift.models.config import TrainConfig
from pairsift.models.noise.consistency import NeighbourIndex
from pairsift.models.pairdata import PairEmbeddings
from pairsift.models.training.heads import ProjectionHeads, load_heads, save_heads
from pairsift.models.training.retrieval import (
    RetrievalConfig,
    load_heads_from_model,
    save_retrieval_model,
)
from pairsift.models.training.scoring import (
    ScoringState,
    build_scoring_state,
    fold_of_keys,
    score_batch,
)


@pytest.fixture()
def remote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.chdir(tmp_path)  # a local fallback would leave a "memory:" folder here
    return f"memory://pairsift-test-{uuid.uuid4().hex}/fit"


def _no_local_copy() -> None:
    assert not any(name.startswith("memory") for name in os.listdir("."))


def test_heads_and_scoring_state_round_trip_through_a_remote_path(remote: str) -> None:
    rng = np.random.default_rng(0)
    data = PairEmbeddings(image=rng.normal(size=(40, 8)).astype(np.float32),
                          text=rng.normal(size=(40, 6)).astype(np.float32),
                          keys=[f"k{i}" for i in range(40)])
    torch.manual_seed(0)
    heads = ProjectionHeads(8, 6, 4)
    save_heads(heads, f"{remote}/heads")
    for a, b in zip(heads.parameters(), load_heads(f"{remote}/heads").parameters(), strict=True):
        torch.testing.assert_close(a, b)
    state = build_scoring_state(heads, data, TrainConfig(num_negatives=8), seed=0)
    state.fold_heads = [ProjectionHeads(8, 6, 4), ProjectionHeads(8, 6, 4)]
    state.save(f"{remote}/scoring")
    loaded = ScoringState.load(f"{remote}/scoring")
    folds = fold_of_keys(data.keys, 2)
    want = score_batch(state, data.image, data.text, folds=folds)
    got = score_batch(loaded, data.image, data.text, folds=folds)
    np.testing.assert_allclose(got["loss"], want["loss"])
    _no_local_copy()


def test_anchors_and_retrieval_model_round_trip_through_a_remote_path(remote: str) -> None:
    rng = np.random.default_rng(1)
    image, text = rng.normal(size=(30, 8)), rng.normal(size=(30, 6))
    index = NeighbourIndex.build(image, text, [f"k{i}" for i in range(30)], k=5)
    assert not NeighbourIndex.exists(f"{remote}/neighbours")
    index.save(f"{remote}/neighbours")
    assert NeighbourIndex.exists(f"{remote}/neighbours")
    loaded = NeighbourIndex.load(f"{remote}/neighbours")
    np.testing.assert_array_equal(loaded.score(image, text), index.score(image, text))
    heads = ProjectionHeads(8, 6, 4)
    save_retrieval_model(f"{remote}/model", heads, RetrievalConfig("default", dict(heads.config)))
    back, config = load_heads_from_model(f"{remote}/model")
    assert config.encoder_spec == "default"
    for a, b in zip(heads.parameters(), back.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    _no_local_copy()
