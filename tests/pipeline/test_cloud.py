"""A whole `pairsift run` with input and output in S3, against moto's S3 server on loopback:
the same labels and the same curated bytes as the run on local disk."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def s3_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL_S3": endpoint,
                        "FSSPEC_S3_ENDPOINT_URL": endpoint}.items():
        monkeypatch.setenv(name, value)
    yield endpoint
    server.stop()


def _digests(fs, root: str) -> dict[str, str]:  # noqa: ANN001 - any fsspec filesystem
    out = {}
    for folder in ("shards", "audit"):
        for path in sorted(fs.find(f"{root}/{folder}")):
            out[path[len(root) + 1:]] = hashlib.sha256(fs.cat_file(path)).hexdigest()
    return out


def test_a_run_reads_and_writes_s3(
    s3_endpoint: str, noisy_input: Path, finished_run: Path, run_config, pinned_run
) -> None:
    import fsspec
    import s3fs

    fs = s3fs.S3FileSystem(endpoint_url=s3_endpoint)
    fs.mkdir("pairsift-test")
    for path in sorted(noisy_input.iterdir()):
        fs.put_file(str(path), f"pairsift-test/in/{path.name}")
    fsspec.filesystem("s3").invalidate_cache()
    pinned_run("s3://pairsift-test/in", "s3://pairsift-test/out", run_config(), wave_size=2)
    remote = json.loads(fs.cat_file("pairsift-test/out/summary.json"))
    local = json.loads((finished_run / "summary.json").read_text())
    assert remote["pairs"] == local["pairs"] and remote["detection"] == local["detection"]
    local_fs = fsspec.filesystem("file")
    assert _digests(fs, "pairsift-test/out") == _digests(local_fs, str(finished_run))
    assert fs.exists("pairsift-test/out/model/model.safetensors")
