"""The console script: the product's commands, and the benchmarks' through entry points."""

from __future__ import annotations

import argparse

import pytest

from pairsift.pipeline.cli import build_parser, main


def _choices(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_benchmark_commands_arrive_through_entry_points() -> None:
    top = _choices(build_parser())
    assert {"run", "demo", "train", "eval", "audit", "data", "bench"} <= set(top)
    bench = _choices(top["bench"])
    assert set(bench) == {"bound", "compare", "crosslingual", "embed", "embed-probe", "from-embeddings", "driver-memory", "kill-resume", "quality", "score", "stages", "translation-labels",
                          "translate", "report"}


def test_unknown_flag_is_one_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        main(["train", "--input", "x", "--output", "y", "--epochz", "2"])
    assert raised.value.code == 2
    assert "--epochz" in capsys.readouterr().err


def test_a_flag_neither_pairsift_nor_beam_knows_is_refused(tmp_path) -> None:
    from pairsift.pipeline.options import unknown_flags

    with pytest.raises(SystemExit, match="unknown flag --sed; did you mean --seed"):
        main(["run", "--input", str(tmp_path), "--output", str(tmp_path / "o"), "--sed", "7"])
    with pytest.raises(SystemExit, match="unknown flag --translate-to"):
        main(["run", "--input", str(tmp_path), "--output", str(tmp_path / "o"),
              "--translate-to", "pt"])
    assert not (tmp_path / "o").exists()  # refused before anything was written
    # Beam's own options pass through, in both spellings
    assert unknown_flags(["--direct_num_workers", "2", "--runner=DirectRunner",
                          "--direct_running_mode", "multi_processing"]) == []


def test_the_script_turns_a_failure_into_one_line(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    from pairsift.pipeline.cli import console_main

    missing = str(tmp_path / "nope")
    assert console_main(["run", "--input", missing, "--output", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"pairsift: error: input not found: {missing} (--debug for the traceback)"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("encoder:\n  batchsize: 3\n")
    assert console_main(["run", "--input", str(tmp_path), "--output", str(tmp_path / "o"),
                         "--config", str(bad)]) == 1
    assert "encoder.batchsize; did you mean encoder.batch_size" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError):  # --debug, anywhere: the traceback
        console_main(["run", "--input", missing, "--output", str(tmp_path / "o"), "--debug"])


def test_a_full_disk_is_one_line_saying_so(noisy_input, tmp_path, monkeypatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    import errno

    import pyarrow.parquet as pq

    from pairsift.pipeline.cli import console_main

    def full(*_args, **_kwargs) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pq, "write_table", full)  # every parquet write, inside the Beam job too
    code = console_main(["run", "--input", str(noisy_input), "--output", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert err[-1].startswith("pairsift: error: the disk is full (No space left on device)")
    assert "rerun the same command" in err[-1] and not any("Traceback" in line for line in err)


def test_a_failed_beam_job_is_one_line_naming_the_cause(noisy_input, tmp_path, monkeypatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from pairsift.pipeline import pass1
    from pairsift.pipeline.cli import console_main

    def explode(self, samples):  # noqa: ANN001, ANN202 - a worker's per-shard step
        raise RuntimeError("worker exploded on purpose")

    monkeypatch.setattr(pass1.EmbedShard, "shard_rows", explode)
    code = console_main(["run", "--input", str(noisy_input), "--output", str(tmp_path / "o"),
                         "--direct_num_workers", "1"])  # the patched step runs in this process
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len([line for line in err if line.startswith("pairsift: error:")]) == 1
    assert "worker exploded on purpose" in err[-1] and "Traceback" not in "\n".join(err)


def test_a_plugin_that_fails_to_import_does_not_break_the_cli(monkeypatch, caplog) -> None:
    from importlib.metadata import EntryPoint

    from pairsift.pipeline import cli

    broken = EntryPoint("gone", "pairsift.benchmarks.no_such_module:register", cli.BENCH_GROUP)
    real = cli.entry_points
    monkeypatch.setattr(cli, "entry_points",
                        lambda group: [*real(group=group), *([broken] if group == cli.BENCH_GROUP else [])])
    bench = _choices(_choices(build_parser())["bench"])
    assert "quality" in bench and "gone" not in bench
    assert "skipping the 'gone' command" in caplog.text


def test_a_job_stream_failure_is_one_line_with_what_to_change() -> None:
    from pairsift.pipeline.cli import error_line

    grpc_repr = ('<_MultiThreadedRendezvous of RPC that terminated with:\n'
                 '\tstatus = StatusCode.DEADLINE_EXCEEDED\n'
                 '\tdetails = "Stream removed (Deadline Exceeded)"\n'
                 '\tdebug_error_string = "DEADLINE_EXCEEDED:Stream removed (Deadline Exceeded)"\n>')
    line = error_line(RuntimeError(grpc_repr))
    assert line.startswith('the Beam job service reported: "Stream removed (Deadline Exceeded)"')
    assert "--job_server_timeout" in line
    assert error_line(RuntimeError("first\nsecond\n>")) == "second"
