"""Beam pipeline construction from the user's extra flags.

Any flag pairsift does not know goes to Beam's PipelineOptions, so the same command runs on
Dataflow (`--runner DataflowRunner --project ... --region ... --temp_location gs://...`).
Locally the default is the in-process FnApiRunner (never Prism, which downloads a binary);
`--direct_num_workers` and `--direct_running_mode` are honoured by it.

On Dataflow each of the run's jobs gets its own copy of the options (:func:`job_options`): a
job name of its own, and the GPU only for the job that runs the towers ("pass 1"); every other
job drops the accelerator and takes the `--cpu_*` settings of :class:`PairsiftDataflowOptions`.
"""

from __future__ import annotations

import copy
import difflib
import logging
import os
import re
import time
from collections.abc import Sequence
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import (
    DirectOptions,
    GoogleCloudOptions,
    PipelineOptions,
    StandardOptions,
    TestOptions,
    WorkerOptions,
)
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.runners.runner import PipelineState

from pairsift.models.config import PairsiftConfig

LOCAL_RUNNERS = (None, "", "DirectRunner", "FnApiRunner", "BundleBasedDirectRunner")
DATAFLOW_RUNNERS = ("DataflowRunner", "TestDataflowRunner")
GPU_JOB = "pass 1"  # the only job that runs the image and text towers
# Compute Engine machine families that come with GPUs attached: not for the CPU-only jobs
GPU_MACHINE_FAMILIES = ("a2-", "a3-", "a4-", "g2-", "g4-")


class PairsiftDataflowOptions(PipelineOptions):
    """Worker settings for the jobs that run no towers. Registered with Beam (a subclass is
    enough) so that `pairsift run` accepts the flags and Beam neither drops nor warns on them;
    :func:`job_options` applies them to every job but pass 1, which keeps `--machine_type`,
    `--sdk_container_image`, `--max_num_workers` and the accelerator."""

    @classmethod
    def _add_argparse_args(cls, parser: Any) -> None:
        parser.add_argument(
            "--cpu_machine_type", default=None,
            help="machine type of every Dataflow job but pass 1 (default: --machine_type)")
        parser.add_argument(
            "--cpu_sdk_container_image", default=None,
            help="worker image of every Dataflow job but pass 1, e.g. a CPU-torch build "
            "(default: --sdk_container_image)")
        parser.add_argument(
            "--cpu_max_num_workers", type=int, default=None,
            help="autoscaling cap of every Dataflow job but pass 1 (default: --max_num_workers)")


def make_options(extra_args: Sequence[str]) -> PipelineOptions:
    return PipelineOptions(list(extra_args))


def unknown_flags(extra_args: Sequence[str]) -> list[str]:
    """The flags among ``extra_args`` that Beam's PipelineOptions does not know either (Beam
    itself only logs them and runs on without them)."""
    beam_log = logging.getLogger("apache_beam.options.pipeline_options")
    level = beam_log.level
    beam_log.setLevel(logging.ERROR)  # the check below is the user's message
    try:
        options = PipelineOptions(list(extra_args))
        known = options.get_all_options(retain_unknown_options=False, drop_default=True)
        everything = options.get_all_options(retain_unknown_options=True, drop_default=True)
    finally:
        beam_log.setLevel(level)
    unknown = set(everything) - set(known)
    flags = [a.split("=", 1)[0] for a in extra_args if a.startswith("--")]
    return [f for f in flags if f[2:].replace("-", "_") in unknown]


def check_flags(extra_args: Sequence[str], own_flags: Sequence[str]) -> None:
    """Refuse a flag neither pairsift nor Beam knows, naming the closest pairsift flag, and
    Dataflow settings that would put GPUs under the CPU-only jobs (before any job runs)."""
    for flag in unknown_flags(extra_args):
        close = difflib.get_close_matches(flag, list(own_flags), n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise SystemExit(f"unknown flag {flag}{hint} (pairsift's flags: {', '.join(own_flags)}; "
                         "any Beam pipeline option is accepted too)")
    check_dataflow_flags(make_options(extra_args))


def is_local(options: PipelineOptions) -> bool:
    return options.view_as(StandardOptions).runner in LOCAL_RUNNERS


# a local pass 1 of at least this many shards and bytes runs one worker process per core
# (unless the user chose with --direct_num_workers / --direct_running_mode): below it, the
# processes' start-up (torch and the towers, a few seconds each) costs more than they save
AUTO_WORKERS_MIN_SHARDS = 4
AUTO_WORKERS_MIN_BYTES = 64 * 2**20


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def local_workers(options: PipelineOptions) -> int:
    """How many worker processes (or threads) the local runner runs; 1 elsewhere."""
    if not is_local(options):
        return 1
    direct = options.view_as(DirectOptions)
    if direct.direct_running_mode not in ("multi_processing", "multi_threading"):
        return 1
    return max(1, int(direct.direct_num_workers or 1))


def parallel_local_options(
    options: PipelineOptions, shards: int, input_bytes: int
) -> PipelineOptions:
    """``options`` for a local job over ``shards`` heavy shards of ``input_bytes`` in all
    (pass 1): one worker process per core when the user chose no ``--direct_*`` setting and
    the work is big enough (:data:`AUTO_WORKERS_MIN_SHARDS`, :data:`AUTO_WORKERS_MIN_BYTES`);
    the one in-process worker otherwise. Measured on 2 cores, 100,000 synth pairs: pass 1 in
    75 s with one worker, 47 s with two."""
    given = options.get_all_options(drop_default=True)
    # the flags as typed: "--direct_num_workers 1" is Beam's default, so drop_default hides it
    typed = [str(f).split("=", 1)[0] for f in getattr(options, "_flags", [])]
    cores = usable_cores()
    small = shards < AUTO_WORKERS_MIN_SHARDS or input_bytes < AUTO_WORKERS_MIN_BYTES
    if (not is_local(options) or small or cores < 2
            or {"--direct_num_workers", "--direct_running_mode"} & set(typed)):
        return options
    return PipelineOptions.from_dictionary({
        **given, "direct_num_workers": min(cores, shards),
        "direct_running_mode": "multi_processing"})


def worker_threads(cfg: PairsiftConfig, options: PipelineOptions) -> PairsiftConfig:
    """``cfg`` as a job's workers see it: ``encoder.threads`` 0 (automatic) shares the cores
    among the local runner's worker processes (at least 1 each). Two processes of torch's
    default (every core) on 2 cores took pass 1 from 47 s to 304 s, spinning on each other's
    threads. A number set in the config is kept: what byte-identical runs across machines
    and worker counts pin."""
    workers = local_workers(options)
    if cfg.encoder.threads > 0 or workers <= 1:
        return cfg
    out = copy.deepcopy(cfg)
    out.encoder.threads = max(1, usable_cores() // workers)
    return out


def is_dataflow(options: PipelineOptions) -> bool:
    runner = options.view_as(StandardOptions).runner
    return str(runner or "").rsplit(".", 1)[-1] in DATAFLOW_RUNNERS


def check_dataflow_flags(options: PipelineOptions) -> None:
    """A GPU machine type (G2, A2, ...) carries its GPUs into every job it is given to, so the
    jobs after pass 1 need a CPU machine type of their own."""
    if not is_dataflow(options):
        return
    machine = options.view_as(WorkerOptions).machine_type or ""
    cpu_machine = options.view_as(PairsiftDataflowOptions).cpu_machine_type
    if machine.startswith(GPU_MACHINE_FAMILIES) and not cpu_machine:
        raise SystemExit(f"--machine_type {machine} comes with GPUs, and only pass 1 runs the "
                         "towers: give --cpu_machine_type (e.g. n2-highmem-8) for the other "
                         "Dataflow jobs")
    if cpu_machine and cpu_machine.startswith(GPU_MACHINE_FAMILIES):
        raise SystemExit(f"--cpu_machine_type {cpu_machine} comes with GPUs; the jobs after "
                         "pass 1 run no towers, give a CPU machine type")


def job_slug(job: str) -> str:
    """Dataflow job names take [a-z0-9-] only: "score pass" becomes "score-pass"."""
    return re.sub(r"[^a-z0-9]+", "-", job.lower()).strip("-") or "job"


def run_job_name(options: PipelineOptions) -> str:
    """The run's base job name: the user's --job_name, or one made now and kept on ``options``
    so that every job of the run shares it (Beam's own default differs per job)."""
    cloud = options.view_as(GoogleCloudOptions)
    if not cloud.job_name:
        cloud.job_name = time.strftime("pairsift-%Y%m%d-%H%M%S", time.gmtime())
    return cloud.job_name


def _is_accelerator(entry: str) -> bool:
    return entry.strip().startswith(("worker_accelerator=", "accelerator="))


def _cpu_job_values(values: dict[str, Any]) -> dict[str, Any]:
    """The options of a job that runs no towers: no accelerator (a service option, an old-style
    experiment or a resource hint), and the --cpu_* settings where given."""
    out = dict(values)
    for key in ("dataflow_service_options", "experiments", "resource_hints"):
        kept = [entry for entry in values.get(key) or [] if not _is_accelerator(entry)]
        if kept:
            out[key] = kept
        else:
            out.pop(key, None)
    cpu = {"machine_type": values.get("cpu_machine_type"),
           "sdk_container_image": values.get("cpu_sdk_container_image"),
           "max_num_workers": values.get("cpu_max_num_workers")}
    out.update({key: value for key, value in cpu.items() if value is not None})
    if cpu["sdk_container_image"] is not None:
        out.pop("worker_harness_container_image", None)  # Beam's old name for the image
    return out


def job_options(options: PipelineOptions, job: str) -> PipelineOptions:
    """One Dataflow job's own options, built afresh from the run's: Beam's DataflowRunner
    writes into the options it is given (job name, staging paths), so jobs must not share one
    object. Each job is named ``<run name>-<job>``, since Dataflow answers a second active job of
    the same name with the first one; only pass 1 keeps the GPU settings."""
    values = options.get_all_options(drop_default=True, retain_unknown_options=True)
    values = {key: value for key, value in values.items() if value is not None}
    values["job_name"] = f"{run_job_name(options)}-{job_slug(job)}"
    if job != GPU_JOB:
        values = _cpu_job_values(values)
    return PipelineOptions.from_dictionary(values)


def new_pipeline(options: PipelineOptions, job: str = "Beam job") -> beam.Pipeline:
    """A pipeline for one of the run's jobs (``job`` names it: "pass 1", "score pass", ...).
    Local runs use ``options`` as given; on Dataflow the job gets :func:`job_options`."""
    if is_local(options):
        return beam.Pipeline(runner=FnApiRunner(), options=options)
    if is_dataflow(options):
        check_dataflow_flags(options)
        return beam.Pipeline(options=job_options(options, job))
    return beam.Pipeline(options=options)


class JobFailed(RuntimeError):
    """A Beam job that did not end DONE, or ended DONE without the outputs it must write."""


def is_dry_run(options: PipelineOptions) -> bool:
    """Beam's ``--dry_run`` (with DataflowRunner: translate the graph, submit nothing). Beam
    reads its value as a string, so ``--dry_run False`` would still be a dry run there: refused."""
    value = options.view_as(TestOptions).dry_run
    if isinstance(value, str) and value.strip().lower() in ("false", "0", "no", "off", ""):
        raise SystemExit(f"--dry_run {value} would still be a dry run (Beam reads any value as "
                         "true); leave --dry_run out to run the jobs")
    return bool(value)


def check_launchable(options: PipelineOptions) -> None:
    """`pairsift run` drives several jobs and reads each one's outputs before the next, so
    it cannot be staged as a template: a Dataflow flex template's launcher, too, passes
    --template_location and takes the one job the program writes there."""
    if options.view_as(GoogleCloudOptions).template_location:
        raise SystemExit("pairsift run is a driver of several Beam jobs and cannot be staged with "
                         "--template_location: a classic or flex template launch holds one job "
                         "and does not wait for it, and the driver must wait for each of its "
                         "jobs; run the driver where it can wait (see docs/dataflow.md)")


def run_pipeline(pipeline: beam.Pipeline, job: str = "Beam job",
                 must_exist: Sequence[str] = ()) -> dict[str, int]:
    """Run to completion and check it: the job must end DONE and must have written every
    path in ``must_exist``. Returns the pairsift counters (name → value) for the summary."""
    from pairsift.models.storage.atomic import exists

    result = pipeline.run()
    state = result.wait_until_finish()
    if state is not None and str(state).rsplit(".", 1)[-1] != PipelineState.DONE:
        raise JobFailed(f"{job}: the Beam job ended in state {state}, not DONE")
    missing = [path for path in must_exist if not exists(path)]
    if missing:
        raise JobFailed(f"{job}: the Beam job ended DONE but wrote {len(missing)} of its outputs "
                        f"not at all (first: {missing[0]})")
    counters: dict[str, int] = {}
    try:
        metrics = result.metrics().query()
    except (NotImplementedError, AttributeError):  # a runner without a metrics API
        logging.getLogger(__name__).info(
            "%s: the runner reports no metrics, so summary.json's beam_counters omit this job", job)
        return counters
    for counter in metrics.get("counters", []):
        if counter.key.metric.namespace != "pairsift":
            continue
        value = counter.committed if counter.committed is not None else counter.attempted
        counters[counter.key.metric.name] = counters.get(counter.key.metric.name, 0) + int(value or 0)
    return counters
