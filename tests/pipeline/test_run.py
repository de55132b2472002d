"""End to end: `pairsift run` on a noisy synth set with bad samples mixed in.

The run (``finished_run``, tests/conftest.py) uses the offline default towers at a small
resolution: cheap enough for the suite, and good enough that the shipped path is tested on a
run that separates clean from noisy pairs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
import webdataset as wds

from pairsift.pipeline.io.readers import discover_shards, read_shard

pytestmark = pytest.mark.slow

TINY_ENCODER = "open_clip:pairsift-tiny"  # random-init: the real open_clip code, no weights


def input_keys(root: Path) -> list[str]:
    return [s.key for shard in discover_shards(str(root)) for s in read_shard(shard)]


def audit_frame(out: Path) -> pl.DataFrame:
    return pl.concat([pl.read_parquet(p) for p in sorted((out / "audit").glob("*.parquet"))], how="diagonal_relaxed")


def test_audit_has_every_input_pair_exactly_once(noisy_input: Path, finished_run: Path) -> None:
    audit = audit_frame(finished_run)
    keys = input_keys(noisy_input)
    assert audit.height == len(keys) == 64
    assert sorted(audit["key"].to_list()) == sorted(keys)
    status = dict(zip(audit["key"], audit["status"], strict=True))
    assert status["corrupt_image"] == "decode_error"
    assert status["empty_caption"] == "empty_caption"
    assert status["no_caption"] == "missing_caption"
    assert status["dup_of_first"] == "duplicate"
    ok = audit.filter(pl.col("status") == "ok")
    assert ok.height == 60
    assert set(ok["label"].to_list()) <= {"clean", "hard", "noisy"}
    assert ok["p_clean"].is_not_null().all() and ok["loss"].is_not_null().all()
    errors = audit.filter(pl.col("status") != "ok")
    assert errors["error"].is_not_null().all() and errors["label"].is_null().all()


def test_curated_shards_load_with_webdataset(finished_run: Path) -> None:
    urls = sorted(str(p) for p in (finished_run / "shards").glob("*.tar"))
    samples = list(wds.WebDataset(urls, shardshuffle=False).decode("pil").to_tuple("jpg", "txt", "json"))
    audit = audit_frame(finished_run)
    kept = audit.filter(pl.col("label").is_in(["clean", "hard"]))
    assert len(samples) == kept.height > 0
    for image, caption, meta in samples:
        assert image.size[0] > 0 and caption
        assert meta["label"] in ("clean", "hard")
        assert 0.0 <= meta["p_clean"] <= 1.0 and "uncertainty" in meta and "loss" in meta


def test_summary_reports_noise_ratio_and_auc(finished_run: Path) -> None:
    summary = json.loads((finished_run / "summary.json").read_text())
    assert 0.0 <= summary["estimated_noise_ratio"] <= 1.0
    assert summary["detection"]["true_noise_ratio"] == pytest.approx(0.5, abs=0.1)
    assert 0.0 <= summary["detection"]["detection_roc_auc"] <= 1.0
    assert summary["pairs"]["input"] == 64
    assert summary["beam_counters"]["status_ok"] == 60
    assert (finished_run / "report.html").read_text().startswith("<!doctype html>")
    # the noise ratio comes from the empirical null: one swapped-caption loss per unique pair
    hists = json.loads((finished_run / "fit" / "histograms.json").read_text())
    assert sum(hists["null_loss"]) == sum(hists["loss"]) == 60
    assert summary["mixture"]["null"]["noise_ratio"] == summary["estimated_noise_ratio"]
    # the run separates clean from noisy pairs: the shipped path is tested where it works
    detection = summary["detection"]
    assert detection["detection_roc_auc"] >= 0.8
    assert abs(summary["estimated_noise_ratio"] - detection["true_noise_ratio"]) <= 0.2
    assert detection["kept_precision"] >= 1 - detection["true_noise_ratio"] + 0.2
    assert summary["warnings"] == [] and "Warning:" not in (finished_run / "report.html").read_text()


def test_report_shows_the_fit_warning() -> None:
    from pairsift.pipeline.report.build import _summary_section
    from pairsift.pipeline.summary import fit_warnings

    warnings = fit_warnings({"null": {"noise_ratio": 0.97}})
    summary = {"warnings": warnings, "estimated_noise_ratio": 0.97, "timings_s": {},
               "pairs": {"input": 3, "kept": 0, "by_status": {"ok": 3}, "by_label": {"noisy": 3}}}
    page = _summary_section(summary, None, "1 shard(s) under IN", "OUT").body
    assert "Warning:" in page and "encoder" in page


def test_random_init_towers_and_a_run_that_drops_nearly_all_are_warned_of() -> None:
    from pairsift.pipeline.summary import outcome_warnings

    assert outcome_warnings({"clean": 40, "hard": 40, "noisy": 20}, "default") == []
    tiny = outcome_warnings({"clean": 40, "noisy": 20}, "open_clip:pairsift-tiny")
    assert len(tiny) == 1 and "no pretrained weights" in tiny[0] and "image and text towers" in tiny[0]
    assert outcome_warnings({"clean": 40}, "open_clip:ViT-B-32/laion2b_s34b_b79k") == []
    dropped = outcome_warnings({"hard": 3, "noisy": 118}, "default")
    assert len(dropped) == 1 and "118 of 121" in dropped[0]
    assert outcome_warnings({"noisy": 9}, "default") == []  # too few pairs to judge


def test_no_warning_for_a_null_with_a_clean_share() -> None:
    from pairsift.pipeline.summary import fit_warnings

    assert fit_warnings({"noise_ratio": 0.5, "null": {"noise_ratio": 0.5}}) == []
    assert fit_warnings({"noise_ratio": 0.97}) == []  # two components only: no null to read
    assert len(fit_warnings({"null": {"noise_ratio": 0.96}})) == 1


def test_one_global_uncertainty_threshold_divides_every_shard(finished_run: Path, run_config) -> None:
    import numpy as np

    from pairsift.models.noise.division import threshold_from_histogram
    from pairsift.models.noise.fit import UNCERTAINTY_BINS
    from pairsift.models.noise.histogram import histogram2d
    from pairsift.models.noise.mixture import BetaMixture
    from pairsift.models.training.scoring import loss_range

    cfg = run_config()
    noise_fit = json.loads((finished_run / "fit" / "noise_fit.json").read_text())
    thr = noise_fit["uncertainty_threshold"]
    summary = json.loads((finished_run / "summary.json").read_text())
    assert summary["mixture"]["uncertainty_threshold"] == thr
    ok = audit_frame(finished_run).filter(pl.col("status") == "ok")
    assert ok["source_shard"].n_unique() == 3  # the pairs come from several pass-2 shards
    # the threshold is the one all shards' pairs give together, not any one shard's
    mixture = BetaMixture.from_dict(noise_fit["mixture"])
    lo, hi = loss_range(cfg.train)
    loss, u = ok["loss"].to_numpy(), ok["uncertainty"].to_numpy()
    counts = histogram2d(loss, u, (lo, hi), (0.0, 1.0), UNCERTAINTY_BINS)
    assert thr == threshold_from_histogram(counts, lo, hi, mixture, cfg.division)
    clean = ok.filter(pl.col("label") == "clean")["uncertainty"].to_numpy()
    assert np.all(clean < thr)


def test_pass_two_divides_by_the_fused_posterior(finished_run: Path) -> None:
    import numpy as np

    from pairsift.models.noise.mixture import BetaMixture

    train = json.loads((finished_run / "fit" / "train.json").read_text())
    assert train["consistency_anchors"] == train["fit_pairs"]  # fewer than max_anchors
    noise_fit = json.loads((finished_run / "fit" / "noise_fit.json").read_text())
    params = noise_fit["mixture"]
    assert params["consistency"] is not None and params["consistency"]["weight"] == 0.5
    mixture = BetaMixture.from_dict(params)
    ok = audit_frame(finished_run).filter(pl.col("status") == "ok")
    loss, consistency = ok["loss"].to_numpy(), ok["consistency"].to_numpy()
    assert np.all(np.isfinite(consistency))
    fused = mixture.posterior(loss, consistency)
    np.testing.assert_allclose(ok["p_clean"].to_numpy(), fused, atol=1e-4)  # audit rounds
    assert not np.allclose(fused, mixture.posterior_clean(loss), atol=1e-3)
    # a null with a clean share gives one global fused cut, and no kept pair falls below it
    keep = noise_fit["keep_posterior"]
    assert keep is not None and mixture.keep_loss() is not None
    kept = ok.filter(pl.col("label") != "noisy")["p_clean"].to_numpy()
    assert np.all(kept >= keep - 1e-6)


def test_final_model_is_trained_on_the_kept_pairs_only(finished_run: Path) -> None:
    from pairsift.models.training.retrieval import RetrievalModel, load_heads_from_model

    summary = json.loads((finished_run / "summary.json").read_text())
    kept = audit_frame(finished_run).filter(pl.col("label").is_in(["clean", "hard"]))
    final = summary["final_model"]
    assert final["trained_on"] == "kept" and final["loss"] == "contrastive"
    assert final["pairs"] == kept.height < 60  # pairs pass 2 dropped never reach the model
    _, config = load_heads_from_model(str(finished_run / "model"))
    assert config.trained_with["pairs"] == kept.height
    assert config.trained_with["method"] == "contrastive"
    model = RetrievalModel.load(str(finished_run / "model"))
    assert model.encode_texts(["a red circle"]).shape[0] == 1


def test_final_model_weighs_each_kept_pair_by_its_posterior() -> None:
    import numpy as np

    from pairsift.pipeline.final_model import posterior_weights

    np.testing.assert_allclose(posterior_weights(np.array([0.5, 0.9, np.nan]), 2.0), [0.25, 0.81, 1.0])
    assert posterior_weights(np.array([0.5]), 0.0) is None
    with pytest.raises(ValueError, match="final_weight_power"):
        posterior_weights(np.array([0.5]), -1.0)


def test_final_model_trains_on_the_kept_sample_with_its_posteriors(finished_run: Path) -> None:
    """The tally job's kept sample is every kept pair (under the cap), with its audit p_clean."""
    sample = pl.read_parquet(finished_run / "fit" / "final_sample.parquet")
    kept = audit_frame(finished_run).filter(pl.col("label").is_in(["clean", "hard"]))
    joined = sample.join(kept, on=["source_shard", "key"], how="inner")
    assert sample.height == kept.height == joined.height
    assert (joined["p_clean"] == joined["p_clean_right"]).all()
    assert sample.select(["source_shard", "index"]).rows() == sorted(
        sample.select(["source_shard", "index"]).rows())  # input order


def test_final_model_keeps_fit_heads_when_too_little_was_kept(finished_run: Path, run_config) -> None:
    from pairsift.pipeline.final_model import run_final_model
    from pairsift.pipeline.layout import RunLayout

    cfg = run_config()
    cfg.train.final_min_pairs = 61
    layout = RunLayout(str(finished_run))
    done = Path(layout.fit_file("_final_done.json"))
    saved = done.read_bytes()
    done.unlink()
    try:
        info = run_final_model(cfg, layout, kept_pairs=60)
    finally:
        done.write_bytes(saved)
    assert info["trained_on"] == "fit" and "final_min_pairs" in info["reason"]  # model untouched


def output_bytes(out: Path) -> dict[str, bytes]:
    files = sorted(p for d in ("shards", "audit") for p in (out / d).iterdir())
    return {f"{p.parent.name}/{p.name}": p.read_bytes() for p in files}


def test_same_input_and_seed_give_identical_bytes(
    noisy_input: Path, finished_run: Path, tmp_path: Path, run_config, pinned_run
) -> None:
    pinned_run(str(noisy_input), str(tmp_path / "again"), run_config(), wave_size=3)
    assert output_bytes(tmp_path / "again") == output_bytes(finished_run)


def _finished_files(folder: Path) -> list[Path]:
    """Parquet files written to the end: pathlib's glob also matches the ``.tmp-*`` file a
    writer is still filling (the kill below once landed on one, and nothing had finished)."""
    return [p for p in folder.glob("*.parquet") if not p.name.startswith(".tmp-")]


def test_killed_run_resumes_to_identical_output(
    noisy_input: Path, finished_run: Path, tmp_path: Path, run_config, e2e_threads: int
) -> None:
    config = tmp_path / "cfg.json"
    config.write_text(json.dumps(run_config().to_dict()))
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "pairsift.pipeline.cli", "run", "--input", str(noisy_input),
           "--output", str(out), "--config", str(config), "--wave-size", "1"]
    # same torch thread count as the in-process reference run (float reductions depend on it)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": str(e2e_threads)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if len(_finished_files(out / "embeddings")) >= 1:
            break
        time.sleep(0.2)
    assert proc.poll() is None, "run finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    embedded_before = len(_finished_files(out / "embeddings"))
    assert 1 <= embedded_before < 4 and not (out / "summary.json").exists()
    # what a writer killed mid-file leaves (atomic_open's temp name); the rerun removes it
    (out / "shards").mkdir(exist_ok=True)
    (out / "shards" / ".tmp-0123abcd-00002.tar").write_bytes(b"half a tar")
    resumed = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "already embedded, skipping" in resumed.stderr
    assert "removed 1 temp file(s)" in resumed.stderr
    assert not [p for p in out.rglob(".tmp-*")]
    assert output_bytes(out) == output_bytes(finished_run)


def test_changed_config_on_existing_output_is_refused(noisy_input: Path, finished_run: Path, run_config) -> None:
    from pairsift.pipeline.run import run

    cfg = run_config()
    cfg.seed = 99
    with pytest.raises(SystemExit, match="different input or config"):
        run(str(noisy_input), str(finished_run), cfg)



def test_train_from_run_and_from_shards_then_eval(
    noisy_input: Path, finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pairsift.pipeline.cli import main

    assert main(["train", "--input", str(finished_run), "--output", str(tmp_path / "m1"), "--epochs", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["pairs"] == 60  # ok pairs, the duplicate left out
    assert (tmp_path / "m1" / "config.json").exists() and (tmp_path / "m1" / "model.safetensors").exists()
    shards = str(finished_run / "shards")
    assert main(["train", "--input", shards, "--output", str(tmp_path / "m2"), "--epochs", "1",
                 "--encoder", TINY_ENCODER]) == 0
    kept = audit_frame(finished_run).filter(pl.col("label").is_in(["clean", "hard"])).height
    assert json.loads(capsys.readouterr().out)["pairs"] == kept
    assert main(["eval", "--model", str(tmp_path / "m1"), "--data", str(noisy_input)]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["pairs"] >= 2 and 0.0 <= metrics["rsum"] <= 600.0
    assert set(metrics) >= {"i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10"}


def test_a_run_to_a_remote_path_writes_everything_there(
    noisy_input: Path, finished_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    run_config, pinned_run,
) -> None:
    """An fsspec output (memory:// here, gs:// on Dataflow) gets every file, fit state
    included, and the launcher's disk none: workers can only read what is in the bucket."""
    import os
    import uuid

    import fsspec

    monkeypatch.chdir(tmp_path)
    out = f"memory://pairsift-run-{uuid.uuid4().hex}"
    pinned_run(str(noisy_input), out, run_config(), wave_size=2)
    assert not [name for name in os.listdir(".") if name.startswith("memory")]
    fs = fsspec.filesystem("memory")
    root = out[len("memory://"):]
    for name in ("fit/scoring/bank.safetensors", "fit/neighbours/anchors.safetensors",
                 "fit/heads/heads.safetensors", "model/model.safetensors", "summary.json"):
        assert fs.exists(f"{root}/{name}"), name
    with fs.open(f"{root}/summary.json", "r") as handle:
        remote = json.load(handle)
    local = json.loads((finished_run / "summary.json").read_text())
    assert remote["pairs"] == local["pairs"]  # the same labels as the local run
    assert remote["detection"] == local["detection"]


def test_resume_accepts_the_same_input_with_a_trailing_slash(
    noisy_input: Path, finished_run: Path, run_config, pinned_run
) -> None:
    before = output_bytes(finished_run)
    result = pinned_run(str(noisy_input) + "/", str(finished_run), run_config(), wave_size=2)
    assert result.summary["pairs"]["input"] == 64
    assert output_bytes(finished_run) == before  # every stage found its work done
    assert not (finished_run / "_run.lock.json").exists()


def test_a_shard_gone_before_pass_two_keeps_its_pairs_in_the_audit(
    noisy_input: Path, finished_run: Path, tmp_path: Path, run_config, pinned_run
) -> None:
    import shutil

    inp, out = tmp_path / "input", tmp_path / "out"
    shutil.copytree(noisy_input, inp)
    shutil.copytree(finished_run, out)
    record = json.loads((out / "config.json").read_text())
    record["input"] = str(inp)  # the copy's own input
    (out / "config.json").write_text(json.dumps(record))
    listed = (out / "input_shards.json").read_text().replace(str(noisy_input), str(inp))
    (out / "input_shards.json").write_text(listed)
    gone = sorted(inp.glob("*.tar"))[1]
    keys = [s.key for s in read_shard(discover_shards(str(gone))[0])]
    gone.unlink()  # between pass 1 and pass 2: redo pass 2 for it, and what follows
    for name in ("00001.tar", "00001.parquet", "00001_stats.json"):
        (out / "shards" / name).unlink()
    (out / "audit" / "00001.parquet").unlink()
    (out / "fit" / "_final_done.json").unlink()
    with pytest.raises(SystemExit, match=r"\d+ pair\(s\) embedded in pass 1 could not be re-read"):
        pinned_run(str(inp), str(out), run_config(), wave_size=2)
    audit = audit_frame(out)
    assert audit.height == 64 and audit["key"].n_unique() == 64  # nothing lost, nothing added
    lost = audit.filter(pl.col("status") == "reread_error")
    before = audit_frame(finished_run).filter(pl.col("source_shard") == "00001")
    # the pairs it would have kept need their bytes; a dropped pair's label stands without them
    kept_before = before.filter(pl.col("label").is_in(["clean", "hard"]))["key"].to_list()
    assert kept_before and sorted(lost["key"].to_list()) == sorted(kept_before)
    assert set(lost["key"].to_list()) <= set(keys) and lost["label"].is_null().all()
    assert lost["error"].str.contains("could not re-read").all()
    assert json.loads((out / "summary.json").read_text())["pairs"]["input"] == 64
    assert not (out / "shards" / "00001_stats.json").exists()  # a rerun retries the shard


def test_a_run_that_stopped_before_writing_anything_can_start_again_with_other_settings(
    tmp_path: Path, run_config, capsys: pytest.CaptureFixture[str]
) -> None:
    from pairsift.pipeline.cli import console_main

    (tmp_path / "t.csv").write_text("name,caption\na,hello\n")
    out = str(tmp_path / "o")
    assert console_main(["run", "--input", str(tmp_path / "t.csv"), "--output", out,
                         "--image-column", "nosuch"]) == 1
    assert console_main(["run", "--input", str(tmp_path / "t.csv"), "--output", out,
                         "--caption-column", "nosuch"]) == 1
    err = capsys.readouterr().err
    assert "no column 'nosuch' for the caption" in err and "holds a run" not in err
    from pairsift.pipeline.layout import RunLayout
    from pairsift.pipeline.run import _check_config

    _check_config(RunLayout(out), run_config(), str(tmp_path / "t.csv"))  # accepted afresh
