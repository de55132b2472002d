"""Beam pipeline construction from the user's extra flags.

Any flag pairsift does not know goes to Beam's PipelineOptions, so the same command runs on
Dataflow (`--runner DataflowRunner --project ... --region ... --temp_location gs://...`).
Locally the default is the in-process FnApiRunner (never Prism, which downloads a binary);
`--direct_num_workers` and `--direct_running_mode` are honoured by it.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import (
    GoogleCloudOptions,
    PipelineOptions,
    StandardOptions,
    TestOptions,
)
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.runners.runner import PipelineState

LOCAL_RUNNERS = (None, "", "DirectRunner", "FnApiRunner", "BundleBasedDirectRunner")


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
    """Refuse a flag neither pairsift nor Beam knows, naming the closest pairsift flag."""
    for flag in unknown_flags(extra_args):
        close = difflib.get_close_matches(flag, list(own_flags), n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise SystemExit(f"unknown flag {flag}{hint} (pairsift's flags: {', '.join(own_flags)}; "
                         "any Beam pipeline option is accepted too)")


def is_local(options: PipelineOptions) -> bool:
    return options.view_as(StandardOptions).runner in LOCAL_RUNNERS


def new_pipeline(options: PipelineOptions, job: str = "Beam job") -> beam.Pipeline:
    """A pipeline for one of the run's jobs (``job`` names it: "pass 1", "score pass", ...)."""
    if is_local(options):
        return beam.Pipeline(runner=FnApiRunner(), options=options)
    return beam.Pipeline(options=options)


class JobFailed(RuntimeError):
    """A Beam job that did not end DONE, or ended DONE without the outputs it must write."""


def is_dry_run(options: PipelineOptions) -> bool:
    """Beam's ``--dry_run`` (with DataflowRunner: translate the graph, submit nothing)."""
    return bool(options.view_as(TestOptions).dry_run)


def check_launchable(options: PipelineOptions) -> None:
    """`pairsift run` drives several jobs and reads each one's outputs before the next, so
    it cannot be staged as one classic template."""
    if options.view_as(GoogleCloudOptions).template_location:
        raise SystemExit("pairsift run is a driver of several Beam jobs and cannot be staged with "
                         "--template_location; launch the driver itself as a Dataflow flex "
                         "template (see the README's Dataflow section)")


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
    except (NotImplementedError, AttributeError):  # runners that report no metrics
        return counters
    for counter in metrics.get("counters", []):
        if counter.key.metric.namespace != "pairsift":
            continue
        value = counter.committed if counter.committed is not None else counter.attempted
        counters[counter.key.metric.name] = counters.get(counter.key.metric.name, 0) + int(value or 0)
    return counters
