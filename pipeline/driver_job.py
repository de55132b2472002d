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
from collections.abc import Iterator, Sequence

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


class RunDriver(beam.DoFn):
    """The driver job's one step: `pairsift run` with the launch's flags, to the end."""

    def process(self, argv: list[str]) -> Iterator[str]:
        from pairsift.pipeline.cli import main

        code = main(argv)
        if code != 0:
            raise RuntimeError(f"pairsift run exited with code {code}")
        yield "done"


def build_driver_job(pipeline: beam.Pipeline, argv: Sequence[str]) -> None:
    _ = pipeline | "Launch" >> beam.Create([driver_argv(argv)]) | "RunDriver" >> beam.ParDo(RunDriver())


def launch_driver_job(argv: Sequence[str], options: PipelineOptions) -> None:
    """Write (under a template launch: hand to the launcher) the driver job of ``argv``."""
    pipeline = new_pipeline(options, DRIVER_JOB)  # a CPU job of its own name
    workers = pipeline.options.view_as(WorkerOptions)
    workers.num_workers, workers.max_num_workers = 1, 1
    workers.autoscaling_algorithm = "NONE"
    build_driver_job(pipeline, argv)
    pipeline.run()
    log.info("flex template: the driver job is written; it runs the whole pairsift run")
