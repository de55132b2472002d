"""`pairsift run` under a flex template launch: the whole run as one single-worker driver job."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from apache_beam.options.pipeline_options import PipelineOptions

from pairsift.pipeline.driver_job import driver_argv, launch_driver_job

GPU_IMAGE = "us-central1-docker.pkg.dev/pairsift-test/images/pairsift-worker-gpu:test"
CPU_IMAGE = "us-central1-docker.pkg.dev/pairsift-test/images/pairsift-worker-cpu:test"
ACCELERATOR = "worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver"
DATAFLOW = ["--runner", "DataflowRunner", "--project", "pairsift-test", "--region", "us-central1",
            "--temp_location", "gs://pairsift-test-bucket/tmp", "--no_auth", "--dry_run", "True",
            "--job_name", "curate-100m", "--sdk_container_image", GPU_IMAGE,
            "--machine_type", "g2-standard-8", "--dataflow_service_options", ACCELERATOR,
            "--cpu_sdk_container_image", CPU_IMAGE, "--cpu_machine_type", "n2-standard-4",
            "--experiments", "use_runner_v2"]


def test_the_driver_runs_without_the_template_flag() -> None:
    argv = ["run", "--input", "gs://in", "--template_location", "gs://t/job", "--x",
            "--template_location=gs://t/job2", "--output", "gs://out"]
    assert driver_argv(argv) == ["run", "--input", "gs://in", "--x", "--output", "gs://out"]


def test_the_driver_job_does_the_whole_run(noisy_input: Path, tmp_path: Path, run_config) -> None:
    """Locally the driver job's one step runs `pairsift run` to the end, as its worker would."""
    config = tmp_path / "config.json"
    config.write_text(json.dumps(run_config().to_dict() | {"method": None}), encoding="utf-8")
    out = tmp_path / "out"
    argv = ["run", "--input", str(noisy_input), "--output", str(out), "--config", str(config),
            "--template_location", str(tmp_path / "job.json")]
    launch_driver_job(argv, PipelineOptions([]))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["pairs"]["input"] == 64 and summary["pairs"]["kept"] > 0


def test_a_failed_launch_fails_once_with_its_reason(tmp_path: Path) -> None:
    """Dataflow retries a failed step; the retry reports the first failure, runs nothing."""
    import apache_beam as beam
    import pytest
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    from pairsift.pipeline.driver_job import build_driver_job

    argv = ["run", "--input", str(tmp_path / "missing"), "--output", str(tmp_path / "out")]
    for attempt in (1, 2):
        pipeline = beam.Pipeline(runner=FnApiRunner())
        build_driver_job(pipeline, argv, launch_id="launch-1")
        with pytest.raises(Exception, match="already, not run again" if attempt == 2 else "missing"):
            pipeline.run().wait_until_finish()
    marker = json.loads((tmp_path / "out" / "_driver_failed.json").read_text())
    assert marker["launch"] == "launch-1" and "missing" in marker["error"]


def test_the_driver_job_is_one_cpu_worker(describe_dataflow_job, tmp_path: Path) -> None:
    from apache_beam.runners.dataflow.dataflow_runner import DataflowRunner

    captured: dict[str, Any] = {}
    original = DataflowRunner.run_pipeline

    def keep(self: Any, pipeline: Any, options: Any) -> Any:
        captured["result"] = original(self, pipeline, options)
        return captured["result"]

    DataflowRunner.run_pipeline = keep  # type: ignore[method-assign]
    try:
        launch_driver_job(["run", "--input", "gs://in", "--output", "gs://out", *DATAFLOW],
                          PipelineOptions(DATAFLOW))
    finally:
        DataflowRunner.run_pipeline = original  # type: ignore[method-assign]
    proto, staged = describe_dataflow_job(captured["result"])
    pool = proto.environment.worker_pools[0]
    assert proto.name == "curate-100m-driver"
    assert pool.num_workers == 1 and pool.autoscaling_settings.max_num_workers == 1
    assert pool.machine_type == "n2-standard-4" and pool.worker_harness_container_image == CPU_IMAGE
    assert "worker_accelerator" not in str(proto.environment.service_options)
    assert any(path.endswith("/pipeline.pb") for path in staged)  # the graph, staged as runner v2 reads it
