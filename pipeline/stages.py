"""The stages of `pairsift run`, each listed once, in run order, with its completion markers.

A stage is a name (also its ``summary.json`` ``timings_s`` key), the outputs whose presence
means it is complete, and its run. Every stage writes atomically and skips work already done
(shard by shard where it runs on Beam), so a killed run restarted with the same arguments
resumes where it stopped and gives the same bytes as an uninterrupted run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from apache_beam.options.pipeline_options import PipelineOptions

from pairsift.models.config import PairsiftConfig
from pairsift.models.noise.fit import NoiseFit
from pairsift.models.storage.atomic import exists, write_json
from pairsift.pipeline.io.readers import InputShard
from pairsift.pipeline.layout import RunLayout

log = logging.getLogger(__name__)


@dataclass
class RunContext:
    """What every stage reads, and what the stages hand on to later ones."""

    cfg: PairsiftConfig
    layout: RunLayout
    options: PipelineOptions
    shards: list[InputShard]
    wave_size: int = 4
    parts: list[Any] = field(default_factory=list)  # --embeddings: clip-retrieval parts
    counters: dict[str, int] = field(default_factory=dict)  # Beam counters, summed
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage
    peak_rss_mib: dict[str, float] = field(default_factory=dict)  # high-water mark after each
    fit_info: dict[str, Any] = field(default_factory=dict)
    noise_fit: NoiseFit | None = None
    tally: Any = None  # pipeline.tally.Tally: counts over the audit
    final_info: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)

    def add_counters(self, counters: dict[str, int]) -> None:
        for key, value in counters.items():
            self.counters[key] = self.counters.get(key, 0) + value


@dataclass(frozen=True)
class Stage:
    name: str
    markers: Callable[[RunContext], list[str]]  # outputs that exist once the stage is done
    run: Callable[[RunContext], None]

    def complete(self, ctx: RunContext) -> bool:
        return all(exists(path) for path in self.markers(ctx))


def _shard_outputs(ctx: RunContext, path_of: Callable[[str], str]) -> list[str]:
    return [path_of(shard.name) for shard in ctx.shards]


def _run_pass1(ctx: RunContext) -> None:
    from pairsift.pipeline.pass1 import run_pass1

    ctx.add_counters(run_pass1(ctx.shards, ctx.cfg, ctx.layout, ctx.options, ctx.wave_size))


def _run_dedup(ctx: RunContext) -> None:
    from pairsift.pipeline.dedup import run_dedup

    run_dedup(ctx.cfg, ctx.layout, ctx.options)


def _run_fit(ctx: RunContext) -> None:
    from pairsift.pipeline.fit import run_fit

    ctx.fit_info = run_fit(ctx.cfg, ctx.layout)


def _run_score(ctx: RunContext) -> None:
    from pairsift.pipeline.score_pass import run_score_pass

    ctx.add_counters(run_score_pass(ctx.cfg, ctx.layout, ctx.options))


def _run_mixture(ctx: RunContext) -> None:
    from pairsift.pipeline.score_pass import fit_noise

    ctx.noise_fit = fit_noise(ctx.cfg, ctx.layout)


def _run_pass2(ctx: RunContext) -> None:
    from pairsift.pipeline.pass2 import run_pass2

    ctx.add_counters(run_pass2(ctx.shards, ctx.cfg, ctx.layout, ctx.options))


def _run_tally(ctx: RunContext) -> None:
    from pairsift.pipeline.tally import run_tally

    ctx.tally = run_tally(ctx.cfg, ctx.layout, ctx.options)


def _run_final_model(ctx: RunContext) -> None:
    from pairsift.pipeline.final_model import run_final_model

    assert ctx.tally is not None
    ctx.final_info = run_final_model(ctx.cfg, ctx.layout, ctx.tally.kept(ctx.cfg.output.keep_labels))


def _run_summary(ctx: RunContext) -> None:
    from pairsift.pipeline.report.build import write_report
    from pairsift.pipeline.summary import build_summary, fit_summary

    assert ctx.noise_fit is not None and ctx.tally is not None
    summary = build_summary(
        ctx.tally,
        input_pairs_expected=None,
        mixture=fit_summary(ctx.noise_fit),
        fit_info=ctx.fit_info,
        timings=ctx.timings,
        counters=ctx.counters,
        config=ctx.cfg.to_dict(),
        keep_labels=list(ctx.cfg.output.keep_labels),
    )
    summary["shards"] = {f"{i:05d}": s.name for i, s in enumerate(ctx.shards)}
    summary["final_model"] = ctx.final_info
    summary["peak_rss_mib"] = dict(ctx.peak_rss_mib)
    # summary.json holds timings, so it is the one output that differs between runs
    write_json(ctx.layout.summary, summary)
    started = time.monotonic()
    write_report(ctx.layout, summary, ctx.noise_fit, ctx.tally, input_description(ctx))
    log.info("summary: report.html written in %.1f s", time.monotonic() - started)
    ctx.summary = summary


def input_description(ctx: RunContext) -> str:
    """The input in a few words: the shards' folder (or first path) and how many there are."""
    if not ctx.shards:
        return f"{len(ctx.parts)} embedding part(s)" if ctx.parts else "no input shards"
    first = ctx.shards[0].path
    folder = first.rsplit("/", 1)[0] if "/" in first else first
    if all(s.path.startswith(folder) for s in ctx.shards):
        return f"{len(ctx.shards):,} shard(s) under {folder}"
    return f"{len(ctx.shards):,} shard(s), the first {first}"


def _curated(ctx: RunContext) -> list[str]:
    from pairsift.pipeline.pass2 import output_name

    names = [output_name(i) for i in range(len(ctx.shards))]
    return [ctx.layout.audit_file(n) for n in names] + [ctx.layout.shard_stats(n) for n in names]


def _run_import(ctx: RunContext) -> None:
    from pairsift.pipeline.embedding_run import import_parts

    ctx.add_counters(import_parts(ctx.parts, ctx.layout, ctx.options))


def _run_label(ctx: RunContext) -> None:
    from pairsift.pipeline.embedding_run import label_parts

    ctx.add_counters(label_parts(ctx.parts, ctx.cfg, ctx.layout, ctx.options))


def _run_curate_by_key(ctx: RunContext) -> None:
    from pairsift.pipeline.embedding_run import check_keys_matched, curate_by_key

    if ctx.shards:
        ctx.add_counters(curate_by_key(ctx.shards, ctx.cfg, ctx.layout, ctx.options, ctx.parts))
        check_keys_matched(ctx.shards, ctx.layout)


def _shard_stats(ctx: RunContext) -> list[str]:
    from pairsift.pipeline.pass2 import output_name

    return [ctx.layout.shard_stats(output_name(i)) for i in range(len(ctx.shards))]


STAGES: tuple[Stage, ...] = (
    Stage("pass1", lambda c: _shard_outputs(c, c.layout.embeddings_file), _run_pass1),
    Stage("dedup", lambda c: [c.layout.dedup_done], _run_dedup),
    Stage("fit", lambda c: [c.layout.fit_done], _run_fit),
    Stage("score", lambda c: [c.layout.histograms], _run_score),
    Stage("mixture", lambda c: [c.layout.noise_fit], _run_mixture),
    Stage("pass2", _curated, _run_pass2),
    Stage("tally", lambda c: [c.layout.tally, c.layout.final_sample, c.layout.gallery], _run_tally),
    Stage("final_model", lambda c: [c.layout.final_done], _run_final_model),
    Stage("summary", lambda c: [c.layout.summary, c.layout.report], _run_summary),
)
_BY_NAME = {stage.name: stage for stage in STAGES}
# a run from precomputed embeddings (--embeddings): parts stand in for pass 1, and pass 2
# labels the parts, curating the image shards by key where --input names them too
EMBEDDING_STAGES: tuple[Stage, ...] = (
    Stage("import", lambda c: [c.layout.embeddings_file(p.name) for p in c.parts], _run_import),
    _BY_NAME["dedup"], _BY_NAME["fit"], _BY_NAME["score"], _BY_NAME["mixture"],
    Stage("label", lambda c: [c.layout.keep_file(p.name) for p in c.parts], _run_label),
    Stage("curate", _shard_stats, _run_curate_by_key),
    _BY_NAME["tally"], _BY_NAME["final_model"], _BY_NAME["summary"],
)


def run_stages(ctx: RunContext, stages: tuple[Stage, ...] = STAGES) -> RunContext:
    """Run every stage in order, timing each (a resumed stage skips its finished work)."""
    for stage in stages:
        if stage.complete(ctx) and stage.name != "summary" and stage.markers(ctx):
            log.info("%s: outputs present, resuming past finished work", stage.name)
        else:
            log.info("%s: starting", stage.name)
        start = time.monotonic()
        stage.run(ctx)
        ctx.timings[stage.name] = time.monotonic() - start
        ctx.peak_rss_mib[stage.name] = peak_rss_mib()
    return ctx


def peak_rss_mib() -> float:
    """The high-water mark so far of this process's resident memory, or of any child process
    that has ended (SDK workers), whichever is higher: after a stage, the most it used."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return round(max(own, children) / 1024.0, 1)  # KiB on Linux
