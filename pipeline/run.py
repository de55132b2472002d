"""`pairsift run`: the stages of :mod:`pairsift.pipeline.stages`, in order, over one input.

Every stage writes atomically and skips work whose output exists, so a killed run restarted
with the same arguments resumes where it stopped and gives the same bytes as an
uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from apache_beam.options.pipeline_options import PipelineOptions

from pairsift.models.config import PairsiftConfig
from pairsift.models.noise.fit import NoiseFit
from pairsift.models.storage.atomic import (
    exists,
    list_files,
    read_json,
    remove,
    remove_orphans,
    write_json,
)
from pairsift.pipeline.io.readers import InputShard, discover_shards
from pairsift.pipeline.io.table_reader import check_columns
from pairsift.pipeline.layout import RunLayout
from pairsift.pipeline.options import (
    check_launchable,
    is_dry_run,
    is_local,
    make_options,
    new_pipeline,
)
from pairsift.pipeline.run_lock import run_lock

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    layout: RunLayout
    summary: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)


def check_division(cfg: PairsiftConfig) -> None:
    """Pass 2 labels shard by shard, so the division must be one a noise fit applies pair by
    pair (GMM and keep-a-fraction rank all pairs at once: benchmark baselines)."""
    try:
        NoiseFit.check_method(cfg.division)
    except ValueError as exc:
        raise SystemExit(f"{exc} (the benchmark runs the other baselines)") from None


def normalise_input(path: str) -> str:
    """The input as recorded: ``DIR/`` and ``DIR`` name one input."""
    stripped = path.rstrip("/")
    return stripped if stripped and not stripped.endswith(":") else path


def _check_config(layout: RunLayout, cfg: PairsiftConfig, input_path: str,
                  embeddings: str | None = None) -> None:
    """A resumed run must use the same input and config, or its outputs would mix."""
    record: dict[str, Any] = {"input": normalise_input(input_path), "config": cfg.to_dict()}
    if embeddings:
        record["embeddings"] = normalise_input(embeddings)
    if exists(layout.config):
        previous = read_json(layout.config)
        previous["input"] = normalise_input(str(previous.get("input", "")))
        if previous == record:
            return
        if _has_stage_outputs(layout):
            raise SystemExit(
                f"{layout.root} holds a run with a different input or config; "
                "use a new --output, or delete it to start over"
            )
        log.info("%s holds a run that stopped before writing anything: starting afresh "
                 "with this input and config", layout.root)
        remove(layout.input_shards)
    write_json(layout.config, record)


def _has_stage_outputs(layout: RunLayout) -> bool:
    """Whether any stage wrote a file: a run that stopped before (a column or config mistake
    found at start) leaves only its records, and may start again with other settings."""
    return any(list_files(folder, "") for folder in
               (layout.embeddings, layout.scores, layout.fit, layout.shards, layout.audit, layout.keep))


def _fixed_shards(layout: RunLayout, found: list[InputShard]) -> list[InputShard]:
    """The shards the run started with: recorded at the start, kept on resume, so a shard
    that went missing is still curated (or reported) under its own output name, and output
    names never shift."""
    if not exists(layout.input_shards):
        write_json(layout.input_shards, [dataclasses.asdict(s) for s in found])
        return found
    recorded = [InputShard(**data) for data in read_json(layout.input_shards)]
    now = {s.name for s in found}
    then = {s.name for s in recorded}
    if now != then:
        log.warning("input changed since the run started: %d shard(s) missing, %d new; the "
                    "run keeps the shards it started with", len(then - now), len(now - then))
    return recorded


def build_job_graphs(shards: list[InputShard], cfg: PairsiftConfig, layout: RunLayout,
                     options: PipelineOptions) -> dict[str, Any]:
    """`--dry_run`: build the Beam jobs' graphs (a remote runner translates each one and
    submits nothing) and stop: the later stages need outputs a dry run never writes."""
    from pairsift.pipeline.dedup import build_dedup
    from pairsift.pipeline.pass1 import build_pass1
    from pairsift.pipeline.pass2 import build_pass2, output_name
    from pairsift.pipeline.score_pass import build_score_pass
    from pairsift.pipeline.tally import build_tally

    names = [s.name for s in shards]
    audits = [layout.audit_file(output_name(i)) for i in range(len(shards))]
    builders = {
        "pass 1": lambda p: build_pass1(p, shards, cfg, layout),
        "dedup": lambda p: build_dedup(p, cfg, layout, names),
        "score pass": lambda p: build_score_pass(p, cfg, layout, names),
        "pass 2": lambda p: build_pass2(p, shards, list(enumerate(shards)), cfg, layout),
        "tally": lambda p: build_tally(p, cfg, layout, audits),
    }
    results: dict[str, Any] = {}
    for job, build in builders.items():
        pipeline = new_pipeline(options, job)
        build(pipeline)
        # --dry_run: a remote runner translates the graph and submits nothing
        results[job] = None if is_local(options) else pipeline.run()
        log.info("dry run: %s graph built", job)
    log.info("dry run: job graphs built, nothing ran")
    return results


def run(
    input_path: str | None,
    output: str,
    cfg: PairsiftConfig,
    beam_args: Sequence[str] = (),
    wave_size: int = 4,
    embeddings: str | None = None,
) -> RunResult:
    """Why one piece: the run's set-up reads in order (config, layout, inputs, lock, the
    recorded shards, the stages) and each step needs the one before."""
    from pairsift.models.translation.langid import normalize_lang
    from pairsift.pipeline.io.clip_retrieval import discover_parts
    from pairsift.pipeline.stages import EMBEDDING_STAGES, STAGES, RunContext, run_stages

    # `pt_BR` and `pt` name one target: stages key captions and embeddings by the normal code
    cfg.translate.target_langs = [normalize_lang(code) for code in cfg.translate.target_langs]
    check_division(cfg)
    layout = RunLayout(output.rstrip("/"))
    options = make_options(beam_args)
    check_launchable(options)
    shards = discover_shards(input_path) if input_path else []
    parts = discover_parts(embeddings) if embeddings else []
    if input_path:
        log.info("input: %d shard(s) under %s", len(shards), input_path)
    if embeddings:
        log.info("embeddings: %d part(s) under %s", len(parts), embeddings)
    if is_dry_run(options):
        jobs = build_job_graphs(shards, cfg, layout, options)
        return RunResult(layout, {"dry_run": True, "jobs": jobs})
    with run_lock(layout.lock):
        _check_config(layout, cfg, input_path or "", embeddings)
        orphans = remove_orphans(layout.root)  # a killed run's half-written files
        if orphans:
            log.info("removed %d temp file(s) a stopped run left in %s", orphans, layout.root)
        shards = [  # how this run may read them (not recorded: it follows the config)
            dataclasses.replace(shard, allow_outside=cfg.limits.allow_paths_outside_input,
                                max_image_bytes=cfg.limits.max_image_bytes,
                                max_caption_bytes=cfg.limits.max_caption_bytes,
                                key_column=cfg.input.key_column,
                                image_column=cfg.input.image_column,
                                caption_column=cfg.input.caption_column)
            for shard in _fixed_shards(layout, shards)
        ]
        check_columns([s for s in shards if s.kind == "table"])
        ctx = RunContext(cfg, layout, options, shards, wave_size, parts=parts)
        ctx = run_stages(ctx, EMBEDDING_STAGES if embeddings else STAGES)
    timings = {k: v for k, v in ctx.timings.items() if k != "summary"}
    lost = ctx.summary.get("pairs", {}).get("by_status", {}).get("reread_error", 0)
    if lost:
        raise SystemExit(
            f"{lost} pair(s) embedded in pass 1 could not be re-read in pass 2 (an input shard "
            f"changed or went missing); they are in {layout.audit} with status reread_error. "
            "Restore the input and rerun the same command to curate them"
        )
    return RunResult(layout, ctx.summary, timings)
