"""The embed stage (ShardEmbedder, as pass 1 runs it per shard) on tiny towers."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pairsift.models.config import EncoderConfig
from pairsift.models.encoders.base import PairEncoder
from pairsift.models.encoders.factory import build_encoder, build_text_encoder
from pairsift.models.encoders.fixtures import save_tiny_clip, save_tiny_text_model
from pairsift.models.records import PairSample, sha256_hex
from pairsift.transforms.embed import PairEncoderHandler, ShardEmbedder


@pytest.fixture(scope="module")
def towers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("embed_towers")
    return {
        "pair": f"hf:{save_tiny_clip(root / 'clip', 'clip')}",
        "text": f"hf:{save_tiny_text_model(root / 'bert')}",
    }


def _png(color: tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


def _samples(n: int) -> list[PairSample]:
    words = ["red", "green", "blue", "yellow", "black", "white", "small"]
    out = []
    for i in range(n):
        captions = {"pt": f"um gato {words[i % 7]}"} if i % 2 == 0 else {}
        out.append(PairSample(
            key=f"k{i}", source_shard="00000", index=i,
            image_bytes=_png((30 * i % 256, 60, 255 - 20 * i), (40 + i, 30)),
            image_format="png", caption=f"a {words[i % 7]} cat", captions=captions,
            meta={"is_noisy": i == 3},
        ))
    return out


def _run(samples: list[PairSample], cfg: EncoderConfig, langs: list[str], tmp: Path,
         max_pixels: int = 1_000_000, share: bool = False
         ) -> tuple[dict[str, dict], dict[str, dict], dict[str, int]]:
    """The shard's rows as pass 1 gets them: (embedded by key, failed by key, outcomes)."""
    embedder = ShardEmbedder(cfg, langs, max_pixels)
    embedder.setup(share_across_processes=share)
    try:
        rows = list(embedder.embed(samples))
    finally:
        embedder.teardown()
    assert [r["key"] for r in rows if r["status"] == "ok"] == [
        s.key for s in samples if any(r["key"] == s.key and r["status"] == "ok" for r in rows)]
    embedded = {r["key"]: r for r in rows if r["status"] == "ok"}
    failed = {r["key"]: r for r in rows if r["status"] != "ok"}
    return embedded, failed, dict(embedder.outcomes)


def test_embed_stage_matches_bare_encoder_and_audits_decode_errors(towers, tmp_path) -> None:
    samples = _samples(7)
    corrupt = PairSample("bad", "00000", 7, b"\x89PNG\r\n\x1a\n truncated", "png", "a cat")
    cfg = EncoderConfig(spec=towers["pair"], multilingual_spec=towers["text"], batch_size=3, device="cpu")
    embedded, failed, counters = _run([*samples, corrupt], cfg, ["pt"], tmp_path)

    assert set(embedded) == {s.key for s in samples} and set(failed) == {"bad"}
    assert failed["bad"]["status"] == "decode_error" and failed["bad"]["error"]
    assert failed["bad"]["index"] == 7 and failed["bad"]["sha256"] == sha256_hex(corrupt.image_bytes)
    assert counters == {"ok": 7, "decode_error": 1}

    pair = build_encoder(cfg.spec)
    multi = build_text_encoder(cfg.multilingual_spec)
    transform = pair.image_transform()
    for sample in samples:
        row = embedded[sample.key]
        assert row["status"] == "ok" and row["error"] is None
        assert (row["index"], row["source_shard"]) == (sample.index, "00000")
        assert row["sha256"] == sha256_hex(sample.image_bytes)
        assert (row["width"], row["height"]) == (40 + sample.index, 30)
        assert row["is_noisy"] == (sample.index == 3)
        image = Image.open(io.BytesIO(sample.image_bytes)).convert("RGB")
        expected = {
            "image_emb": pair.encode_images(transform(image)[None])[0],
            "text_emb": pair.encode_texts([sample.caption])[0],
            "text_emb_ml": multi.encode_texts([sample.caption])[0],
        }
        if "pt" in sample.captions:
            expected["text_emb_pt"] = multi.encode_texts([sample.captions["pt"]])[0]
            assert row["caption_pt"] == sample.captions["pt"]
        assert sorted(k for k in row if "_emb" in k) == sorted(expected)  # absent, not null
        for name, vector in expected.items():
            assert row[name].dtype == np.float16 and row[name].ndim == 1
            np.testing.assert_allclose(row[name].astype(np.float32), vector.numpy(), atol=2e-3)


def test_pixel_limit_becomes_decode_error(towers, tmp_path) -> None:
    big = PairSample("big", "00000", 0, _png((1, 2, 3), (300, 200)), "png", "a cat")
    cfg = EncoderConfig(spec=towers["pair"], batch_size=2, device="cpu")
    embedded, failed, _ = _run([big, *_samples(1)], cfg, [], tmp_path, max_pixels=50_000)
    assert set(embedded) == {"k0"}
    assert "over the limit of 50000" in failed["big"]["error"]
    assert not any("_emb" in k for k in embedded["k0"] if k not in ("image_emb", "text_emb"))


def test_one_poison_pair_fails_alone(towers, tmp_path, monkeypatch) -> None:
    original = PairEncoder.encode_texts

    def fragile(self, texts):
        if any("yellow" in t for t in texts):
            raise RuntimeError("tokenizer exploded")
        return original(self, texts)

    monkeypatch.setattr(PairEncoder, "encode_texts", fragile)
    cfg = EncoderConfig(spec=towers["pair"], batch_size=4, device="cpu")
    embedded, failed, counters = _run(_samples(6), cfg, [], tmp_path)
    assert set(failed) == {"k3"}  # the yellow caption; its batch-mates are embedded
    assert failed["k3"]["status"] == "embed_error" and "tokenizer exploded" in failed["k3"]["error"]
    assert len(embedded) == 5 and counters["embed_error"] == 1


def test_nonfinite_embeddings_are_audited(towers, tmp_path, monkeypatch) -> None:
    original = PairEncoder.encode_images

    def with_nan(self, pixels):
        out = original(self, pixels)
        out[0, 0] = float("nan")
        return out

    monkeypatch.setattr(PairEncoder, "encode_images", with_nan)
    cfg = EncoderConfig(spec=towers["pair"], batch_size=10, device="cpu")
    embedded, failed, counters = _run(_samples(3), cfg, [], tmp_path)
    assert len(failed) == 1 and len(embedded) == 2
    row = next(iter(failed.values()))
    assert row["status"] == "nonfinite_embedding" and "image_emb" in row["error"]
    assert counters == {"ok": 2, "nonfinite_embedding": 1}


def test_a_failing_model_call_becomes_embed_error_rows(towers, tmp_path, monkeypatch) -> None:
    def broken(self, batch, model, inference_args=None):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(PairEncoderHandler, "run_inference", broken)
    cfg = EncoderConfig(spec=towers["pair"], batch_size=2, device="cpu")
    embedded, failed, _ = _run(_samples(3), cfg, [], tmp_path)
    assert not embedded and set(failed) == {"k0", "k1", "k2"}
    assert all(r["status"] == "embed_error" and "out of memory" in r["error"] for r in failed.values())


def test_threaded_decode_gives_the_same_rows(towers, tmp_path) -> None:
    corrupt = PairSample("bad", "00000", 9, b"GIF89a-not-really", "gif", "a cat")
    samples = [*_samples(5), corrupt]
    rows = {}
    for threads in (0, 2):
        cfg = EncoderConfig(spec=towers["pair"], batch_size=2, device="cpu", decode_threads=threads)
        (tmp_path / str(threads)).mkdir()
        rows[threads] = _run(samples, cfg, [], tmp_path / str(threads))
    inline, threaded = rows[0], rows[2]
    assert inline[2] == threaded[2] == {"ok": 5, "decode_error": 1}
    assert threaded[1]["bad"] == inline[1]["bad"]
    for key, row in inline[0].items():
        assert row.keys() == threaded[0][key].keys()
        for name in ("image_emb", "text_emb"):
            np.testing.assert_array_equal(row[name], threaded[0][key][name])


def test_towers_shared_across_processes_give_the_same_rows(towers, tmp_path) -> None:
    """A GPU worker's processes call one copy of the towers through a proxy: same rows."""
    cfg = EncoderConfig(spec=towers["pair"], multilingual_spec=towers["text"], batch_size=3, device="cpu")
    local = _run(_samples(5), cfg, ["pt"], tmp_path)
    shared = _run(_samples(5), cfg, ["pt"], tmp_path, share=True)
    assert local[2] == shared[2] == {"ok": 5}
    for key, row in local[0].items():
        for name in (k for k in row if "_emb" in k):
            np.testing.assert_array_equal(row[name], shared[0][key][name])


def test_batches_follow_input_order_not_the_caller(towers, tmp_path) -> None:
    """A pair's vectors come from the same batch however its shard's rows are consumed."""
    cfg = EncoderConfig(spec=towers["pair"], batch_size=2, device="cpu")
    whole = _run(_samples(5), cfg, [], tmp_path)[0]
    embedder = ShardEmbedder(cfg, [], 1_000_000)
    embedder.setup(share_across_processes=False)
    lazily = {}
    for row in embedder.embed(iter(_samples(5))):
        lazily[row["key"]] = row
    for key, row in whole.items():
        np.testing.assert_array_equal(row["image_emb"], lazily[key]["image_emb"])
        np.testing.assert_array_equal(row["text_emb"], lazily[key]["text_emb"])
