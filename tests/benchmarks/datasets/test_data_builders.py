"""Dataset builders: layout readable by webdataset and our readers, determinism, sources."""

from __future__ import annotations

import hashlib
import os
import tracemalloc
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from pairsift.pipeline.datasets.common import MissingDatasetError
from pairsift.pipeline.datasets.synth import SynthSource
from pairsift.pipeline.datasets.writer import build_dataset
from pairsift.pipeline.io.readers import discover_shards, read_shard


def _digest(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.iterdir())
        if p.suffix in (".tar", ".parquet") or p.name.endswith("_stats.json")
    }


def test_synth_build_is_byte_identical_per_seed(tmp_path: Path) -> None:
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        build_dataset(SynthSource(60, seed=seed), str(tmp_path / name), noise=0.5, seed=seed,
                      shard_size=25)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")
    assert len(_digest(tmp_path / "a")) == 9  # 3 shards x (tar, parquet, stats)


@pytest.mark.parametrize("mode", ["caption", "image", "partial", "translation"])
def test_layout_ground_truth_and_readers(tmp_path: Path, mode: str) -> None:
    out = tmp_path / mode
    source = SynthSource(80, seed=0, test_fraction=0.25)
    summary = build_dataset(source, str(out), noise=0.5, mode=mode, seed=0, shard_size=50,
                            ship_langs=["de", "pt"])
    train = summary["by_split"]["train"]
    assert summary["noisy"] == round(0.5 * train)
    assert summary["train_noise_ratio"] == pytest.approx(round(0.5 * train) / train)

    samples = [s for shard in discover_shards(str(out)) for s in read_shard(shard)]
    assert len(samples) == 80 and all(s.error_status is None for s in samples)
    assert all(set(s.captions) == {"de", "pt"} for s in samples)
    rows = {r["key"]: r for n in ("00000", "00001") for r in pq.read_table(out / f"{n}.parquet").to_pylist()}
    assert {"caption_de", "caption_pt", "is_noisy", "noise_kind", "original_key"} <= set(rows["000000000"])
    for sample in samples:
        meta = rows[sample.key]
        assert sample.meta["is_noisy"] == meta["is_noisy"] and sample.caption == meta["caption"]
        index = int(sample.key)
        clean = source.texts(index)
        assert meta["split"] == source.split(index)
        if meta["split"] == "test":
            assert not meta["is_noisy"]
        if not meta["is_noisy"]:
            assert meta["noise_kind"] == "none"
            assert sample.caption == clean.caption and sample.captions["de"] == clean.captions["de"]
            assert sample.image_bytes == source.image(index)[0]
            continue
        assert meta["noise_kind"] == {"caption": "caption_shuffle", "image": "image_shuffle",
                                      "partial": "partial", "translation": "translation"}[mode]
        if mode == "caption":
            assert sample.caption != clean.caption and sample.image_bytes == source.image(index)[0]
            assert meta["caption_source"] != meta["original_key"]
        elif mode == "image":
            assert sample.caption == clean.caption and meta["image_source"] != meta["original_key"]
            assert sample.image_bytes != source.image(index)[0]
        elif mode == "partial":
            assert sample.caption != clean.caption
            assert len(sample.caption.split()) >= len(clean.caption.split()) - 1
        else:
            assert sample.caption == clean.caption
            assert sample.captions["de"] != clean.captions["de"]


def test_webdataset_reads_the_shards(tmp_path: Path) -> None:
    webdataset = pytest.importorskip("webdataset")
    build_dataset(SynthSource(30, seed=0), str(tmp_path), noise=0.2, seed=0, shard_size=20)
    urls = [str(tmp_path / "00000.tar"), str(tmp_path / "00001.tar")]
    rows = list(webdataset.WebDataset(urls, shardshuffle=False).decode("pil")
                .to_tuple("png;jpg", "txt", "json"))
    assert len(rows) == 30
    image, caption, meta = rows[0]
    assert image.size == (64, 64) and isinstance(caption, str) and "is_noisy" in meta


def test_rebuild_with_other_settings_is_refused_and_same_settings_resume(tmp_path: Path) -> None:
    build_dataset(SynthSource(20), str(tmp_path), noise=0.2, shard_size=10)
    before = _digest(tmp_path)
    os.remove(tmp_path / "00001_stats.json")  # as if killed while writing shard 1
    build_dataset(SynthSource(20), str(tmp_path), noise=0.2, shard_size=10)
    assert _digest(tmp_path) == before
    with pytest.raises(ValueError, match="other settings"):
        build_dataset(SynthSource(20), str(tmp_path), noise=0.5, shard_size=10)


def test_synth_source_is_lazy_and_memory_is_bounded() -> None:
    """A million-pair source costs nothing up front; items are drawn on demand."""
    tracemalloc.start()
    source = SynthSource(5_000_000, seed=0)
    for index in (0, 4_999_999, 2_500_000):
        assert source.image(index)[0][:4] == b"\x89PNG"
        assert source.texts(index).caption
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 20_000_000


def test_synth_item_is_a_pure_function_of_seed_and_index() -> None:
    a, b = SynthSource(100, seed=4), SynthSource(1000, seed=4)
    assert a.image(42) == b.image(42) and a.texts(42) == b.texts(42)
    edit = a.partial(42, np.random.default_rng(0))
    assert edit.texts.caption != a.texts(42).caption
    assert edit.texts.captions["es"] != a.texts(42).captions["es"]


TUX_ROOT = "/usr/share/tuxpaint/stamps"
needs_tuxpaint = pytest.mark.skipif(not os.path.isdir(TUX_ROOT), reason="tuxpaint-stamps-default not installed")


@needs_tuxpaint
def test_tuxpaint_parses_real_translations() -> None:
    from pairsift.benchmarks.datasets.tuxpaint import TuxpaintSource, parse_stamp_text

    with open(f"{TUX_ROOT}/symbols/money/us/coins/025quarter.txt", encoding="utf-8") as handle:
        texts = parse_stamp_text(handle.read())
    assert texts.caption == "A US 25 cent piece ($.25) called a quarter."
    assert texts.captions["de"].startswith("Eine 25-Cent-Münze")
    assert texts.captions["pt_BR"].startswith("Uma moeda norte-americana")
    assert "ca_valencia" in texts.captions
    source = TuxpaintSource(TUX_ROOT)
    assert len(source) > 900
    splits = [source.split(i) for i in range(len(source))]
    assert 0.12 < splits.count("test") / len(splits) < 0.28
    assert "pt_BR" in source.langs()


@needs_tuxpaint
def test_tuxpaint_renders_svg_with_entities(tmp_path: Path) -> None:
    from pairsift.benchmarks.datasets.tuxpaint import TuxpaintSource

    source = TuxpaintSource(TUX_ROOT)
    index = next(i for i, s in enumerate(source.stamps) if s.rel == "food/loaf_of_bread")
    data, ext = source.image(index)
    assert ext == "png" and data[:4] == b"\x89PNG"


def test_missing_package_names_the_apt_command(tmp_path: Path) -> None:
    from pairsift.benchmarks.datasets.fashion_mnist import FashionMnistSource
    from pairsift.benchmarks.datasets.openclipart import OpenclipartSource

    for cls, package in ((OpenclipartSource, "openclipart-svg"),
                         (FashionMnistSource, "dataset-fashion-mnist")):
        with pytest.raises(MissingDatasetError, match=f"apt-get install {package}"):
            cls(str(tmp_path / "absent"))


def test_openclipart_reads_metadata_and_has_no_ground_truth(tmp_path: Path) -> None:
    from pairsift.benchmarks.datasets.openclipart import OpenclipartSource

    (tmp_path / "animals").mkdir()
    (tmp_path / "animals" / "cat.svg").write_text(
        '<svg xmlns="http://www.w3.org/2000/svg" xmlns:dc="http://purl.org/dc/elements/1.1/" '
        'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" width="10" height="10">'
        "<metadata><rdf:RDF><rdf:Description><dc:title>Sleeping cat</dc:title>"
        "<dc:description>A grey cat asleep</dc:description></rdf:Description></rdf:RDF>"
        '</metadata><rect width="10" height="10" fill="grey"/></svg>'
    )
    source = OpenclipartSource(str(tmp_path))
    assert source.texts(0).caption == "Sleeping cat: A grey cat asleep"
    summary = build_dataset(source, str(tmp_path / "out"), ground_truth=False)
    assert summary["true_noise_ratio"] is None
    sample = next(iter(read_shard(discover_shards(str(tmp_path / "out"))[0])))
    assert "is_noisy" not in sample.meta  # null ground truth is not passed on as a value
    row = pq.read_table(tmp_path / "out" / "00000.parquet").to_pylist()[0]
    assert row["is_noisy"] is None and row["caption"].startswith("Sleeping cat")
    with pytest.raises(ValueError, match="no ground truth"):
        build_dataset(source, str(tmp_path / "out2"), noise=0.2, ground_truth=False)


FMNIST = "/usr/share/datasets/fashion-mnist"


@pytest.mark.skipif(not os.path.isdir(FMNIST), reason="dataset-fashion-mnist not installed")
def test_fashion_mnist_subsample_keeps_both_splits() -> None:
    from pairsift.benchmarks.datasets.fashion_mnist import CLASSES, FashionMnistSource

    source = FashionMnistSource(FMNIST, pairs=500, seed=0)
    assert len(source) == 500
    splits = [source.split(i) for i in range(500)]
    assert 40 < splits.count("test") < 110
    caption = source.texts(0).caption
    label = source.extra(0)["label"]
    assert label in CLASSES and label.split()[-1] in caption
    edit = source.partial(0, np.random.default_rng(0))
    assert label.split()[-1] not in edit.texts.caption


def test_shard_source_reads_a_built_dataset_back(tmp_path: Path) -> None:
    from pairsift.benchmarks.datasets.shards import ShardSource

    source = SynthSource(30, seed=3, test_fraction=0.3)
    build_dataset(source, str(tmp_path / "clean"), shard_size=12, ship_langs=["es"])
    back = ShardSource(str(tmp_path / "clean"), "synth")
    assert len(back) == 30
    for i in range(30):
        assert back.image(i) == source.image(i)
        assert back.texts(i).caption == source.texts(i).caption
        assert back.texts(i).captions == {"es": source.texts(i).captions["es"]}
        assert back.split(i) == source.split(i) and back.key(i) == source.key(i)
    build_dataset(source, str(tmp_path / "noisy"), noise=0.5, shard_size=12)
    with pytest.raises(ValueError, match="without --noise"):
        ShardSource(str(tmp_path / "noisy"))
