"""Beam pipeline construction from the user's extra flags.

Any flag pairsift does not know goes to Beam's PipelineOptions, so the same command runs on
Dataflow (`--runner DataflowRunner --project ... --region ... --temp_location gs://...`).
Locally the default is the in-process FnApiRunner (never Prism, which downloads a binary);
`--direct_num_workers` and `--direct_running_mode` are honoured by it.
"""

from __future__ import annotations

from collections.abc import Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

LOCAL_RUNNERS = (None, "", "DirectRunner", "FnApiRunner", "BundleBasedDirectRunner")


def make_options(extra_args: Sequence[str]) -> PipelineOptions:
    return PipelineOptions(list(extra_args))


def is_local(options: PipelineOptions) -> bool:
    return options.view_as(StandardOptions).runner in LOCAL_RUNNERS


def new_pipeline(options: PipelineOptions) -> beam.Pipeline:
    if is_local(options):
        return beam.Pipeline(runner=FnApiRunner(), options=options)
    return beam.Pipeline(options=options)


def run_pipeline(pipeline: beam.Pipeline) -> dict[str, int]:
    """Run to completion; return the pairsift counters (name → value) for the summary."""
    result = pipeline.run()
    result.wait_until_finish()
    counters: dict[str, int] = {}
    try:
        metrics = result.metrics().query()
    except (NotImplementedError, AttributeError):
        return counters
    for counter in metrics.get("counters", []):
        if counter.key.metric.namespace != "pairsift":
            continue
        value = counter.committed if counter.committed is not None else counter.attempted
        counters[counter.key.metric.name] = counters.get(counter.key.metric.name, 0) + int(value or 0)
    return counters
