"""Tables as people write them: LAION/DataComp/img2dataset column names in any case, named
columns, image bytes in a column, and URL rows against a loopback HTTP server."""

from __future__ import annotations

import io
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pairsift.pipeline.io import fetch
from pairsift.pipeline.io.readers import discover_shards, read_shard
from pairsift.pipeline.io.table_columns import ColumnChoice, TableColumnsError, resolve_columns


def png(color: tuple[int, int, int] = (10, 200, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (16, 16), color).save(out, "PNG")
    return out.getvalue()


class _Images(BaseHTTPRequestHandler):
    hits: Counter = Counter()

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        _Images.hits[self.path] += 1
        if self.path.startswith("/img/"):
            self._send(200, png())
        elif self.path == "/flaky" and _Images.hits[self.path] < 3:
            self._send(503, b"busy")
        elif self.path == "/flaky":
            self._send(200, png((200, 0, 0)))
        elif self.path == "/slow":
            time.sleep(1.5)
            self._send(200, png())
        elif self.path == "/agent":
            self._send(200 if "pairsift" in self.headers.get("User-Agent", "") else 403, png())
        else:
            self._send(404, b"not here")

    def _send(self, code: int, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        return


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setattr(fetch, "POLICY", fetch.FetchPolicy(read_timeout_s=0.5, backoff_s=0.01))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Images)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    _Images.hits.clear()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_laion_style_url_rows_get_a_status_per_way_a_download_fails(tmp_path: Path, server: str) -> None:
    urls = [f"{server}/img/1.png", f"{server}/gone.png", f"{server}/flaky", f"{server}/slow",
            "http://127.0.0.1:9/refused.png", f"{server}/agent"]
    pq.write_table(pa.table({"URL": urls, "TEXT": [f"caption {i}" for i in range(6)],
                             "SAMPLE_ID": [f"s{i}" for i in range(6)], "punsafe": [0.1] * 6}),
                   tmp_path / "laion.parquet")
    rows = {s.key: s for s in read_shard(discover_shards(str(tmp_path / "laion.parquet"))[0])}
    assert rows["s0"].error_status is None and rows["s0"].caption == "caption 0"
    assert rows["s0"].meta == {"url": urls[0], "punsafe": 0.1}  # the rest passes through
    assert rows["s1"].error_status == "http_error" and "HTTP 404" in rows["s1"].error
    assert rows["s2"].error_status is None and _Images.hits["/flaky"] == 3  # two retries
    assert rows["s3"].error_status == "timeout"
    assert rows["s4"].error_status == "connection_error" and "refused" in rows["s4"].error
    assert rows["s5"].error_status is None  # the server saw pairsift's user agent


def test_columns_are_found_in_any_case_and_can_be_named(tmp_path: Path) -> None:
    cols = resolve_columns(["UID", "Url", "Caption", "status", "error_message", "sha256", "WIDTH"])
    assert (cols.key, cols.url, cols.caption) == ("UID", "Url", "Caption")
    assert cols.img2dataset and cols.original_sha256 == "sha256"
    assert cols.passthrough == {"status": "i2d_status", "error_message": "error_message",
                                "WIDTH": "i2d_width", "Url": "url"}
    named = resolve_columns(["a", "b", "c"], ColumnChoice(key="a", image="b", caption="c"))
    assert (named.key, named.path, named.caption) == ("a", "b", "c")
    with pytest.raises(TableColumnsError, match=r"no image column.*the table has \['x', 'caption'\]"):
        resolve_columns(["x", "caption"])
    with pytest.raises(TableColumnsError, match="no column 'pic' for the image"):
        resolve_columns(["x", "caption"], ColumnChoice(image="pic"))


def test_image_bytes_in_a_column_are_read_without_a_download(tmp_path: Path) -> None:
    pq.write_table(pa.table({"key": ["a", "b"], "caption": ["x", "y"], "jpg": [png(), None],
                             "url": ["http://127.0.0.1:9/a", None]}), tmp_path / "t.parquet")
    a, b = read_shard(discover_shards(str(tmp_path / "t.parquet"))[0])
    assert a.error_status is None and a.image_bytes == png() and a.image_format == "jpg"
    assert b.error_status == "missing_image"


def test_a_table_with_both_path_and_url_reads_the_path_where_it_has_one(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(png())
    pq.write_table(pa.table({"key": ["a", "b"], "caption": ["x", "y"], "path": ["a.png", None],
                             "url": ["http://127.0.0.1:9/a", "http://127.0.0.1:9/b"]}),
                   tmp_path / "t.parquet")
    a, b = read_shard(discover_shards(str(tmp_path / "t.parquet"))[0])
    assert a.error_status is None and a.meta["url"] == "http://127.0.0.1:9/a"
    assert b.error_status == "connection_error"  # no path: its url


def test_a_table_without_an_image_column_stops_the_run_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pairsift.pipeline.cli import console_main

    (tmp_path / "t.csv").write_text("name,caption\na,hello\n")
    code = console_main(["run", "--input", str(tmp_path / "t.csv"), "--output", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 1 and "no image column" in err and "['name', 'caption']" in err
    assert "--image-column" in err


class _Served(BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        body = _Served.files.get(self.path)
        self.send_response(200 if body else 404)
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, *_args: object) -> None:
        return


def _serve_synth(tmp_path: Path, count: int, seed: int, noise: float) -> tuple[list, str, ThreadingHTTPServer]:
    """``count`` synth pairs, their images served from loopback as /i/KEY.jpg."""
    from pairsift.pipeline.datasets.synth import SynthSource
    from pairsift.pipeline.datasets.writer import build_dataset

    build_dataset(SynthSource(count, seed=seed, image_size=64, image_format="jpg"),
                  str(tmp_path / "src"), noise=noise, seed=seed, shard_size=count)
    pairs = list(read_shard(discover_shards(str(tmp_path / "src"))[0]))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Served)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    _Served.files = {f"/i/{s.key}.jpg": s.image_bytes for s in pairs}
    return pairs, f"http://127.0.0.1:{httpd.server_address[1]}", httpd


def test_a_laion_parquet_and_a_csv_of_paths_run_end_to_end(tmp_path: Path, run_config, pinned_run) -> None:
    pairs, base, httpd = _serve_synth(tmp_path, 48, seed=5, noise=0.3)
    try:
        (tmp_path / "laion").mkdir()
        pq.write_table(pa.table({"URL": [f"{base}/i/{s.key}.jpg" for s in pairs] + [f"{base}/i/gone.jpg"],
                                 "TEXT": [s.caption for s in pairs] + ["a dead link"],
                                 "SAMPLE_ID": [s.key for s in pairs] + ["gone"],
                                 "WIDTH": [64] * (len(pairs) + 1)}), tmp_path / "laion" / "part-0.parquet")
        laion = pinned_run(str(tmp_path / "laion"), str(tmp_path / "out_laion"), run_config())
    finally:
        httpd.shutdown()
    (tmp_path / "csv" / "img").mkdir(parents=True)
    for s in pairs:
        (tmp_path / "csv" / "img" / f"{s.key}.jpg").write_bytes(s.image_bytes)
    lines = ["path,caption"] + [f"img/{s.key}.jpg,\"{s.caption}\"" for s in pairs]
    (tmp_path / "csv" / "pairs.csv").write_text("\n".join(lines) + "\n")
    csv_run = pinned_run(str(tmp_path / "csv"), str(tmp_path / "out_csv"), run_config())
    for result in (laion, csv_run):
        assert result.summary["pairs"]["by_status"].get("ok") == len(pairs)
    assert laion.summary["pairs"]["by_status"]["http_error"] == 1
    audit = pl.read_parquet(tmp_path / "out_laion" / "audit" / "*.parquet")
    assert {"url", "input_width"} <= set(audit.columns)


def test_a_table_without_a_caption_column_among_others_keeps_every_row(tmp_path: Path) -> None:
    (tmp_path / "b.csv").write_text("key,path\nr1,a.png\nr2,b.png\n")
    rows = list(read_shard(discover_shards(str(tmp_path / "b.csv"))[0]))
    assert [s.key for s in rows] == ["r1", "r2"]  # one row per table row, not one per table
    assert {s.error_status for s in rows} == {"read_error"} and "no caption column" in rows[0].error


class _Counted(_Served):
    hits: Counter = Counter()

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        _Counted.hits[self.path] += 1
        super().do_GET()


def test_a_url_is_fetched_once_and_pass_two_copies_it_from_out(
    tmp_path: Path, run_config, pinned_run, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tarfile

    pairs, base, httpd = _serve_synth(tmp_path, 24, seed=6, noise=0.0)
    httpd.RequestHandlerClass = _Counted
    _Counted.hits.clear()
    pq.write_table(pa.table({"url": [f"{base}/i/{s.key}.jpg" for s in pairs],
                             "caption": [s.caption for s in pairs], "key": [s.key for s in pairs]}),
                   tmp_path / "t.parquet")
    from pairsift.pipeline import stages

    real_pass2 = stages._run_pass2

    def pass2_after_every_link_dies(ctx) -> None:  # noqa: ANN001
        _Served.files.clear()
        real_pass2(ctx)

    monkeypatch.setattr(stages, "STAGES", tuple(
        stages.Stage(s.name, s.markers, pass2_after_every_link_dies) if s.name == "pass2" else s
        for s in stages.STAGES))
    try:
        pinned_run(str(tmp_path / "t.parquet"), str(tmp_path / "out"), run_config())
    finally:
        httpd.shutdown()
    assert set(_Counted.hits.values()) == {1} and len(_Counted.hits) == len(pairs)
    audit = pl.read_parquet(tmp_path / "out" / "audit" / "*.parquet")
    assert set(audit["status"]) == {"ok"}
    served = {s.key: s.image_bytes for s in pairs}
    with tarfile.open(next((tmp_path / "out" / "shards").glob("*.tar"))) as tar:
        images = {m.name.split(".")[0]: tar.extractfile(m).read() for m in tar
                  if m.name.endswith(".jpg")}
    kept = audit.filter(pl.col("label").is_in(["clean", "hard"]))["key"].to_list()
    assert kept and sorted(images) == sorted(kept)
    assert all(images[k] == served[k] for k in kept)  # the bytes fetched in pass 1
    assert list((tmp_path / "out" / "images").glob("*.tar"))


def test_a_changed_image_copy_is_a_reread_error_not_a_wrong_image(
    tmp_path: Path, run_config, pinned_run, monkeypatch: pytest.MonkeyPatch
) -> None:
    pairs, base, httpd = _serve_synth(tmp_path, 24, seed=6, noise=0.0)
    pq.write_table(pa.table({"url": [f"{base}/i/{s.key}.jpg" for s in pairs],
                             "caption": [s.caption for s in pairs], "key": [s.key for s in pairs]}),
                   tmp_path / "t.parquet")
    from pairsift.pipeline import stages

    real_pass2 = stages._run_pass2

    def pass2_after_the_copy_changes(ctx) -> None:  # noqa: ANN001
        import tarfile

        copy = next((tmp_path / "out" / "images").glob("*.tar"))
        raw = bytearray(copy.read_bytes())
        with tarfile.open(copy) as tar:
            for member in tar:
                raw[member.offset_data + member.size // 2] ^= 0xFF  # each image's middle
        copy.write_bytes(bytes(raw))
        real_pass2(ctx)

    monkeypatch.setattr(stages, "STAGES", tuple(
        stages.Stage(s.name, s.markers, pass2_after_the_copy_changes) if s.name == "pass2" else s
        for s in stages.STAGES))
    try:
        with pytest.raises(SystemExit, match="could not be re-read in pass 2"):
            pinned_run(str(tmp_path / "t.parquet"), str(tmp_path / "out"), run_config())
    finally:
        httpd.shutdown()
    audit = pl.read_parquet(tmp_path / "out" / "audit" / "*.parquet")
    failed = audit.filter(pl.col("status") == "reread_error")
    assert failed.height == len(pairs) - audit.filter(pl.col("label") == "noisy").height
    assert all("CRC-32" in e for e in failed["error"]) and failed["label"].is_null().all()
