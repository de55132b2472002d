"""`pairsift run` launched as a Dataflow flex template: the driver becomes one job.

A flex template's launcher runs the program with ``--template_location`` and submits the one
job the program writes there; it cannot wait for the several jobs `pairsift run` submits in
turn. So, launched that way, `pairsift run` writes a single-worker *driver job* whose one step
runs `pairsift run` with the same flags (less ``--template_location``) on its worker: that
worker submits each job, waits for it, checks its outputs, and fails the driver job if any
job fails. The launch returns once the driver job is submitted; the driver job's state is
the run's.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import apache_beam as beam
from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions, WorkerOptions

from pairsift.pipeline.options import new_pipeline

log = logging.getLogger(__name__)

TEMPLATE_FLAG = "--template_location"
DRIVER_JOB = "driver"


def is_template_launch(options: PipelineOptions) -> bool:
    return bool(options.view_as(GoogleCloudOptions).template_location)


def driver_argv(argv: Sequence[str]) -> list[str]:
    """``argv`` without ``--template_location`` (``--flag value`` or ``--flag=value``)."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == TEMPLATE_FLAG:
            skip = True
            continue
        if not arg.startswith(TEMPLATE_FLAG + "="):
            out.append(arg)
    return out


@dataclass(frozen=True)
class DriverLaunch:
    """What the driver job's one element carries: the run's flags and this launch's id."""

    argv: tuple[str, ...]
    launch_id: str

    @property
    def failure_marker(self) -> str | None:
        """``OUT/_driver_failed.json``: a failed launch, so that Dataflow's retries of the
        driver's step (a batch job tries failed work four times) do not rerun the whole run."""
        from pairsift.models.storage.atomic import join

        output = flag_value(self.argv, "--output")
        return join(output.rstrip("/"), "_driver_failed.json") if output else None


def flag_value(argv: Sequence[str], flag: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


class RunDriver(beam.DoFn):
    """The driver job's one step: `pairsift run` with the launch's flags, to the end; a
    failure fails the driver job once, with the run's own one-line reason."""

    def process(self, launch: DriverLaunch) -> Iterator[str]:
        from pairsift.models.storage.atomic import exists, read_json, write_json
        from pairsift.pipeline.cli import error_line, main

        marker = launch.failure_marker
        if marker and exists(marker) and read_json(marker).get("launch") == launch.launch_id:
            raise RuntimeError(f"this launch failed already, not run again: {read_json(marker)['error']}")
        try:
            code, reason = main(list(launch.argv)), None
        except SystemExit as exc:  # pairsift's own one-line errors; never end the worker
            code, reason = (exc.code if isinstance(exc.code, int) else 1), str(exc)
        except Exception as exc:  # noqa: BLE001 - reported once, with the run's reason
            code, reason = 1, error_line(exc)
        if code:
            reason = reason or f"pairsift run exited with code {code}"
            if marker:
                write_json(marker, {"launch": launch.launch_id, "error": reason})
            raise RuntimeError(reason)
        yield "done"


def build_driver_job(pipeline: beam.Pipeline, argv: Sequence[str], launch_id: str | None = None) -> None:
    launch = DriverLaunch(tuple(driver_argv(argv)), launch_id or uuid.uuid4().hex)
    _ = pipeline | "Launch" >> beam.Create([launch]) | "RunDriver" >> beam.ParDo(RunDriver())


def launch_driver_job(argv: Sequence[str], options: PipelineOptions) -> None:
    """Write (under a template launch: hand to the launcher) the driver job of ``argv``."""
    pipeline = new_pipeline(options, DRIVER_JOB)  # a CPU job of its own name
    workers = pipeline.options.view_as(WorkerOptions)
    workers.num_workers, workers.max_num_workers = 1, 1
    workers.autoscaling_algorithm = "NONE"
    build_driver_job(pipeline, argv)
    pipeline.run()
    log.info("flex template: the driver job is written; it runs the whole pairsift run")
