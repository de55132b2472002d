"""Every Beam job of a Dataflow run, as Dataflow would receive it, built offline.

`pairsift run ... --runner DataflowRunner --dry_run True` builds each job's graph; Beam's dry
run returns the job before it has a worker environment (the environment is made while the job
is staged). The test then hands each job to Beam's own DataflowApplicationClient, whose
``create_job_description`` makes the environment exactly as it does before submitting; only its
upload method is replaced by one that keeps the staged files in memory. ``--no_auth`` keeps the
client from looking for credentials, so nothing leaves this machine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from apache_beam.options.pipeline_options import GoogleCloudOptions, WorkerOptions

from pairsift.pipeline.options import (
    PairsiftDataflowOptions,
    check_flags,
    job_options,
    job_slug,
    make_options,
    new_pipeline,
    unknown_flags,
)

GPU_IMAGE = "us-central1-docker.pkg.dev/pairsift-test/images/pairsift-worker-gpu:test"
CPU_IMAGE = "us-central1-docker.pkg.dev/pairsift-test/images/pairsift-worker-cpu:test"
ACCELERATOR = "worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver"
BASE = ["--runner", "DataflowRunner", "--project", "pairsift-test", "--region", "us-central1",
        "--temp_location", "gs://pairsift-test-bucket/tmp", "--no_auth"]
FLAGS = [*BASE, "--dry_run", "True", "--job_name", "curate-100m",
         "--experiments", "use_runner_v2",
         "--sdk_container_image", GPU_IMAGE, "--machine_type", "g2-standard-8",
         "--max_num_workers", "16", "--dataflow_service_options", ACCELERATOR,
         "--cpu_sdk_container_image", CPU_IMAGE, "--cpu_machine_type", "n2-highmem-8",
         "--cpu_max_num_workers", "100"]
TINY_ENCODER = "open_clip:pairsift-tiny"  # random-init: the real open_clip code, no weights


@pytest.fixture(scope="module")
def built_jobs(noisy_input: Path, tmp_path_factory: pytest.TempPathFactory,
               describe_dataflow_job) -> dict[str, Any]:
    """Job name -> (the Dataflow Job message, the files staged for it), for every job the dry
    run built."""
    from pairsift.models.config import PairsiftConfig
    from pairsift.pipeline.run import run

    cfg = PairsiftConfig(seed=0)
    cfg.encoder.spec = TINY_ENCODER
    out = tmp_path_factory.mktemp("dataflow") / "out"
    result = run(str(noisy_input), str(out), cfg, beam_args=FLAGS)
    assert result.summary["dry_run"] and not out.exists()
    return {job: describe_dataflow_job(job_result) for job, job_result in result.summary["jobs"].items()}


def test_the_dry_run_builds_the_embedding_job_and_others(built_jobs: dict[str, Any]) -> None:
    assert "pass 1" in built_jobs and len(built_jobs) >= 3


def test_each_job_has_a_name_of_its_own(built_jobs: dict[str, Any]) -> None:
    names = {job: proto.name for job, (proto, _) in built_jobs.items()}
    assert names["pass 1"] == "curate-100m-pass-1"
    assert all(name == f"curate-100m-{job_slug(job)}" for job, name in names.items())
    assert len(set(names.values())) == len(names)


def test_only_the_embedding_job_gets_the_gpu(built_jobs: dict[str, Any]) -> None:
    for job, (proto, _) in built_jobs.items():
        options = list(proto.environment.service_options)
        accelerators = [o for o in options if o.startswith("worker_accelerator=")]
        pool = proto.environment.worker_pools[0]
        if job == "pass 1":
            assert accelerators == [ACCELERATOR]
            assert pool.machine_type == "g2-standard-8"
            assert pool.autoscaling_settings.max_num_workers == 16
        else:
            assert accelerators == [], job
            assert pool.machine_type == "n2-highmem-8", job
            assert pool.autoscaling_settings.max_num_workers == 100, job
            sent = proto.environment.sdk_pipeline_options["options"]
            assert "worker_accelerator" not in str(sent.get("dataflow_service_options", "")), job


def test_each_job_runs_its_worker_image_on_runner_v2(built_jobs: dict[str, Any]) -> None:
    for job, (proto, _) in built_jobs.items():
        image = GPU_IMAGE if job == "pass 1" else CPU_IMAGE
        pool = proto.environment.worker_pools[0]
        assert pool.worker_harness_container_image == image, job
        assert {c.container_image for c in pool.sdk_harness_container_images} == {image}, job
        assert "use_runner_v2" in proto.environment.experiments, job


def test_the_image_carries_the_sdk_so_nothing_big_is_staged(built_jobs: dict[str, Any]) -> None:
    for job, (_, staged) in built_jobs.items():
        assert any(path.endswith("/pipeline.pb") for path in staged), job
        packages = [p for p in staged if p.endswith((".tar.gz", ".whl", ".zip"))]
        assert packages == [], f"{job} stages {packages}: the worker image should hold them"


def test_pairsift_run_accepts_the_dataflow_flags(noisy_input: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from pairsift.pipeline.cli import console_main

    assert unknown_flags(FLAGS) == []
    assert console_main(["run", "--input", str(noisy_input), "--output", str(tmp_path / "out"),
                         "--encoder", TINY_ENCODER, *FLAGS]) == 0
    assert "dry run: job graphs built, nothing ran" in capsys.readouterr().out


# --- per-job options, without building a graph ----------------------------------------------


def _values(job: str, flags: list[str]) -> dict[str, Any]:
    options = job_options(make_options(flags), job)
    return options.get_all_options(drop_default=True, retain_unknown_options=True)


def test_other_jobs_drop_every_form_of_accelerator() -> None:
    flags = [*BASE, "--dataflow_service_options", ACCELERATOR,
             "--dataflow_service_options", "enable_hot_key_logging",
             "--experiments", "worker_accelerator=type:nvidia-tesla-t4;count:1",
             "--experiments", "use_runner_v2",
             "--resource_hints", "accelerator=type:nvidia-l4;count:1;install-nvidia-driver",
             "--resource_hints", "min_ram=16GB"]
    gpu, cpu = _values("pass 1", flags), _values("score pass", flags)
    assert ACCELERATOR in gpu["dataflow_service_options"]
    assert cpu["dataflow_service_options"] == ["enable_hot_key_logging"]
    assert cpu["experiments"] == ["use_runner_v2"]
    assert cpu["resource_hints"] == ["min_ram=16GB"]


def test_without_cpu_flags_the_other_jobs_keep_the_users_settings() -> None:
    flags = [*BASE, "--sdk_container_image", GPU_IMAGE, "--machine_type", "n1-standard-8",
             "--dataflow_service_options", ACCELERATOR]
    cpu = _values("pass 2", flags)
    assert cpu["sdk_container_image"] == GPU_IMAGE and cpu["machine_type"] == "n1-standard-8"
    assert "dataflow_service_options" not in cpu


def test_the_cpu_image_replaces_the_old_image_flag_too() -> None:
    flags = [*BASE, "--worker_harness_container_image", GPU_IMAGE,
             "--cpu_sdk_container_image", CPU_IMAGE]
    cpu = _values("tally", flags)
    assert cpu["sdk_container_image"] == CPU_IMAGE and "worker_harness_container_image" not in cpu
    assert _values("pass 1", flags)["worker_harness_container_image"] == GPU_IMAGE


def test_jobs_get_fresh_options_and_one_run_name() -> None:
    options = make_options(BASE)
    first, second = job_options(options, "pass 1"), job_options(options, "dedup")
    first.view_as(GoogleCloudOptions).staging_location = "gs://pairsift-test-bucket/changed"
    assert second.view_as(GoogleCloudOptions).staging_location is None
    run_name = options.view_as(GoogleCloudOptions).job_name
    assert run_name.startswith("pairsift-")
    assert first.view_as(GoogleCloudOptions).job_name == f"{run_name}-pass-1"
    assert second.view_as(GoogleCloudOptions).job_name == f"{run_name}-dedup"


def test_local_runs_use_the_options_as_given() -> None:
    options = make_options(["--direct_num_workers", "2", "--cpu_machine_type", "n2-standard-4"])
    pipeline = new_pipeline(options, "score pass")
    assert type(pipeline.runner).__name__ == "FnApiRunner"
    for given in (options, pipeline.options):  # no job name made, no per-job settings applied
        assert given.view_as(GoogleCloudOptions).job_name is None
        assert given.view_as(PairsiftDataflowOptions).cpu_machine_type == "n2-standard-4"


def test_a_gpu_machine_type_needs_a_cpu_one_for_the_other_jobs() -> None:
    with pytest.raises(SystemExit, match="give --cpu_machine_type"):
        check_flags([*BASE, "--machine_type", "g2-standard-8"], ["--input"])
    with pytest.raises(SystemExit, match="comes with GPUs"):
        check_flags([*BASE, "--machine_type", "n1-standard-8", "--cpu_machine_type",
                     "a2-highgpu-1g"], ["--input"])
    check_flags([*BASE, "--machine_type", "g2-standard-8", "--cpu_machine_type",
                 "n2-highmem-8"], ["--input"])
    check_flags(["--machine_type", "g2-standard-8"], ["--input"])  # not Dataflow: not checked
    assert make_options(["--machine_type", "g2-standard-8"]).view_as(
        WorkerOptions).machine_type == "g2-standard-8"
