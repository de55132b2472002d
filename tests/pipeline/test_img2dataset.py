"""The real img2dataset (from the virtualenv `make setup` builds beside pairsift's) downloads
from a loopback HTTP server with dead URLs among the live ones; `pairsift run` on each of its
output formats has one audit row per img2dataset row, failures included, with its reasons."""

from __future__ import annotations

import io
import json
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pairsift.pipeline.cli import console_main

ROOT = Path(__file__).resolve().parents[2]
IMG2DATASET = ROOT / ".venv-img2dataset" / "bin" / "img2dataset"
ROWS, DEAD_EVERY = 60, 9


class _Pictures(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        if not self.path.startswith("/img/"):
            self.send_response(404)
            self.end_headers()
            return
        n = int(self.path.rsplit("/", 1)[-1].split(".")[0])
        out = io.BytesIO()
        Image.new("RGB", (80 + n, 64), ((n * 37) % 255, (n * 11) % 255, 140)).save(out, "JPEG")
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(out.getvalue())))
        self.end_headers()
        self.wfile.write(out.getvalue())

    def log_message(self, *_args: object) -> None:
        return


@pytest.fixture(scope="module")
def url_list(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Pictures)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    urls = [f"{base}/dead/{i}.jpg" if i % DEAD_EVERY == 0 else f"{base}/img/{i}.jpg" for i in range(ROWS)]
    path = tmp_path_factory.mktemp("urls") / "urls.parquet"
    pq.write_table(pa.table({"url": urls, "caption": [f"picture {i}" for i in range(ROWS)],
                             "source_id": [f"src-{i}" for i in range(ROWS)]}), path)
    yield path
    httpd.shutdown()


def _img2dataset(url_list: Path, out: Path, output_format: str) -> None:
    assert IMG2DATASET.exists(), f"{IMG2DATASET} is missing: `make setup` builds it"
    subprocess.run(
        [str(IMG2DATASET), "--url_list", str(url_list), "--input_format", "parquet",
         "--url_col", "url", "--caption_col", "caption", "--output_format", output_format,
         "--output_folder", str(out), "--processes_count", "1", "--thread_count", "8",
         "--image_size", "64", "--save_additional_columns", '["source_id"]',
         "--enable_wandb", "False", "--retries", "0"],
        check=True, capture_output=True, timeout=300,
    )


@pytest.mark.parametrize("output_format", ["webdataset", "parquet", "files"])
def test_every_img2dataset_row_is_an_audit_row(
    output_format: str, url_list: Path, tmp_path: Path, run_config,  # noqa: ANN001
) -> None:
    downloaded = tmp_path / "i2d"
    _img2dataset(url_list, downloaded, output_format)
    theirs = pl.read_parquet(downloaded / "*.parquet")
    config = tmp_path / "config.json"
    config.write_text(json.dumps(run_config().to_dict()))
    out = tmp_path / "out"
    assert console_main(["run", "--input", str(downloaded), "--output", str(out),
                         "--config", str(config)]) == 0
    audit = pl.read_parquet(out / "audit" / "*.parquet")
    assert sorted(audit["key"]) == sorted(theirs["key"])  # every row, failures included
    failed = theirs.filter(pl.col("status") != "success")
    assert failed.height == ROWS // DEAD_EVERY + 1
    rows = audit.join(theirs.select("key", pl.col("error_message").alias("theirs")), on="key")
    gone = rows.filter(pl.col("key").is_in(failed["key"].to_list()))
    assert set(gone["status"]) == {"download_error"}
    assert (gone["error"] == gone["theirs"]).all() and gone["error"].str.contains("404").all()
    assert (gone["reason"] == "download_error: " + gone["error"]).all()
    labelled = audit.filter(pl.col("label").is_not_null())  # each label says why, in its terms
    assert (labelled["reason"].str.split(".").list.first() == labelled["label"]).all()
    noisy = labelled.filter(pl.col("label") == "noisy")
    assert noisy["noise_kind_pred"].is_in(["partial", "complete"]).all()
    assert set(audit["i2d_status"]) == {"success", "failed_to_download"}
    for column in ("url", "source_id", "original_width", "original_height", "exif", "error_message"):
        assert column in audit.columns, column  # img2dataset's columns pass through
    curated = pl.read_parquet(out / "shards" / "*.parquet")
    assert {"url", "source_id", "original_width"} <= set(curated.columns)
    stats = json.loads(next((out / "shards").glob("*_stats.json")).read_text())
    assert stats["count"] == ROWS and stats["failed_to_download"] == failed.height
    assert stats["successes"] == curated.height
