"""`pairsift bench embed` and `embed-probe` run end to end on a tiny tower (figures not asserted)."""

from __future__ import annotations

import argparse
import io

from PIL import Image

from pairsift.benchmarks.embed import register, run_bench
from pairsift.benchmarks.embed_probe import probe
from pairsift.benchmarks.embed_probe import register as register_probe
from pairsift.pipeline.io.shard_writer import ShardSample, write_shard


def _shards(root, pairs: int) -> str:
    samples = []
    for i in range(pairs):
        buf = io.BytesIO()
        Image.new("RGB", (48, 40), (20 * i % 256, 100, 200 - 10 * i)).save(buf, "JPEG")
        caption = f"a {'red' if i % 2 else 'blue'} square number {i}"
        samples.append(ShardSample(f"p{i:03d}", {"jpg": buf.getvalue(), "txt": caption.encode()}))
    samples.append(ShardSample("broken", {"jpg": b"\xff\xd8 not a jpeg", "txt": b"a cat"}))
    write_shard(str(root), "00000", samples)
    return str(root)


def _args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    subparsers = parser.add_subparsers()
    register(subparsers)
    register_probe(subparsers)
    return parser.parse_args(argv)


def test_bench_embed_reports_both_sides(tmp_path) -> None:
    data = _shards(tmp_path, 12)
    args = _args(["embed", "--data", data, "--encoder", "open_clip:pairsift-tiny",
                  "--batch-size", "4", "--limit", "10", "--decode-threads", "2", "--rounds", "2"])
    report = run_bench(args)
    assert report["pairs"] == 10 and report["stage_counters"] == {"ok": 10}
    assert report["bare_images_per_s"] > 0 and report["stage_images_per_s"] > 0
    assert report["ratio_stage_over_bare"] > 0
    assert len(report["stage_images_per_s_all_rounds"]) == 2
    assert report["peak_rss_mib"] >= report["rss_start_mib"] > 0


def test_embed_probe_counts_splits_and_chance(tmp_path) -> None:
    data = _shards(tmp_path, 40)
    args = _args(["embed-probe", "--data", data, "--encoder", "open_clip:pairsift-tiny",
                  "--epochs", "2", "--dim", "8"])
    report = probe(args)
    assert report["pairs"] == 40 and report["train"] + report["test"] == 40 and report["test"] > 0
    assert report["chance_r1"] == round(100.0 / report["test"], 2)
    assert 0 <= report["heads"]["i2t_r1"] <= report["heads"]["i2t_r10"] <= 100
    assert "zero_shot" in report  # an aligned tower also reports its own space
