"""Orchestration that cannot lie: every Beam job is checked for its end state and its
outputs; a dry run builds the job graphs and says nothing ran; a classic template is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from pairsift.pipeline.options import JobFailed, make_options, run_pipeline


class _Result:
    def __init__(self, state: str) -> None:
        self.state = state

    def wait_until_finish(self) -> str:
        return self.state

    def metrics(self) -> _Result:  # Beam's MetricResults, with no counters
        return self

    def query(self) -> dict[str, list]:
        return {"counters": []}


class _Pipeline:
    def __init__(self, state: str) -> None:
        self.state = state

    def run(self) -> _Result:
        return _Result(self.state)


def test_a_job_that_did_not_end_done_is_an_error() -> None:
    with pytest.raises(JobFailed, match="score pass: the Beam job ended in state FAILED"):
        run_pipeline(_Pipeline("FAILED"), "score pass")
    assert run_pipeline(_Pipeline("DONE"), "score pass") == {}


def test_a_job_that_wrote_nothing_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(JobFailed, match="wrote 1 of its outputs not at all"):
        run_pipeline(_Pipeline("DONE"), "pass 1", must_exist=[str(tmp_path / "00000.parquet")])


def test_pass_two_writing_nothing_fails_the_run(noisy_input: Path, tmp_path: Path, monkeypatch,
                                               run_config, pinned_run) -> None:
    from pairsift.pipeline import pass2

    monkeypatch.setattr(pass2.CurateShard, "process", lambda self, element: iter(()))
    with pytest.raises(JobFailed, match="pass 2: the Beam job ended DONE but wrote 4 of its outputs"):
        pinned_run(str(noisy_input), str(tmp_path / "out"), run_config(), wave_size=0)


def test_a_dry_run_builds_the_graphs_and_runs_nothing(noisy_input: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from pairsift.pipeline.cli import console_main

    out = tmp_path / "out"
    assert console_main(["run", "--input", str(noisy_input), "--output", str(out),
                         "--dry_run", "True"]) == 0
    assert "dry run: job graphs built, nothing ran" in capsys.readouterr().out
    assert not out.exists()  # nothing ran, so nothing was written


def test_a_classic_template_is_refused_with_one_line(noisy_input: Path, tmp_path: Path) -> None:
    from pairsift.pipeline.options import check_launchable

    with pytest.raises(SystemExit, match="flex template"):
        check_launchable(make_options(["--template_location", "gs://b/t"]))


def test_dry_run_false_is_refused_not_taken_for_a_dry_run() -> None:
    from pairsift.pipeline.options import is_dry_run, make_options

    assert is_dry_run(make_options(["--dry_run", "True"]))
    assert not is_dry_run(make_options([]))
    with pytest.raises(SystemExit, match="leave --dry_run out"):
        is_dry_run(make_options(["--dry_run", "False"]))
