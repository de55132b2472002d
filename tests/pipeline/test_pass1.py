"""Pass 1's per-shard step: every pair gets one row; batches come from the shard alone."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from pairsift.models.config import PairsiftConfig
from pairsift.models.records import PairSample, Status, audit_row
from pairsift.pipeline.layout import RunLayout
from pairsift.pipeline.pass1 import CHUNK_PAIRS, EmbedShard


class RecordingEmbedder:
    """Stands in for the towers: records the batches it is given, embeds nothing."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def embed(self, samples: Iterable[PairSample]) -> Iterator[dict[str, Any]]:
        batch = list(samples)
        self.calls.append([s.key for s in batch])
        for sample in batch:
            yield audit_row(sample, Status.OK)


def _sample(i: int, caption: str | None) -> PairSample:
    return PairSample(f"k{i}", "00000", i, image_bytes=b"img", image_format="png", caption=caption)


def _step(batch_size: int) -> tuple[EmbedShard, RecordingEmbedder]:
    cfg = PairsiftConfig()
    cfg.encoder.batch_size = batch_size
    step = EmbedShard(cfg, RunLayout("unused"))
    step.translator = lambda samples: None  # langid/translation are tested on their own
    step.embedder = RecordingEmbedder()
    return step, step.embedder


def test_every_pair_gets_one_row_and_stopped_pairs_an_audit_reason() -> None:
    step, _ = _step(batch_size=4)
    samples = [_sample(0, " a red square "), _sample(1, ""), _sample(2, "two blue circles"),
               _sample(3, None)]
    rows = {r["key"]: r for r in step.shard_rows(samples)}
    assert set(rows) == {"k0", "k1", "k2", "k3"}
    assert (rows["k1"]["status"], rows["k3"]["status"]) == ("empty_caption", "missing_caption")
    assert rows["k0"]["status"] == "ok" and rows["k0"]["caption"] == "a red square"  # stripped


def test_chunks_hold_whole_batches_in_input_order() -> None:
    step, embedder = _step(batch_size=100)
    samples = [_sample(i, f"caption {i}") for i in range(2 * CHUNK_PAIRS + 7)]
    rows = list(step.shard_rows(samples))
    assert [r["key"] for r in rows] == [s.key for s in samples]
    chunk = step.chunk_size
    assert chunk % 100 == 0 and chunk <= CHUNK_PAIRS  # a batch never straddles two chunks
    assert [len(c) for c in embedder.calls] == [chunk] * (len(samples) // chunk) + [len(samples) % chunk]
