"""`pairsift run`: pass 1 → fit → score → mixture → pass 2 → final model → summary (DESIGN §2).

Every stage writes atomically and skips work whose output exists, so a killed run restarted
with the same arguments resumes where it stopped and gives the same bytes as an
uninterrupted run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pairsift.models.config import PairsiftConfig
from pairsift.models.storage.atomic import exists, read_json, write_json
from pairsift.pipeline.io.readers import discover_shards
from pairsift.pipeline.layout import RunLayout
from pairsift.pipeline.options import make_options

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    layout: RunLayout
    summary: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)


ROW_WISE_DIVISIONS = ("pairsift", "bmm", "none")


def check_division(cfg: PairsiftConfig) -> None:
    """Pass 2 labels shard by shard, so a division must be a per-pair function of the scores
    and the global fit. GMM and keep-a-fraction rank all pairs at once: benchmark baselines."""
    division = cfg.division
    if division.method in ROW_WISE_DIVISIONS:
        return
    if division.method == "clip_score" and division.similarity_threshold is not None:
        return
    raise SystemExit(
        f"division.method {division.method!r} needs all scores at once and cannot label shard by "
        f"shard; use one of {', '.join(ROW_WISE_DIVISIONS)}, or clip_score with "
        "division.similarity_threshold (the benchmark runs the other baselines)"
    )


def _check_config(layout: RunLayout, cfg: PairsiftConfig, input_path: str) -> None:
    """A resumed run must use the same input and config, or its outputs would mix."""
    record = {"input": input_path, "config": cfg.to_dict()}
    if exists(layout.config):
        previous = read_json(layout.config)
        if previous != record:
            raise SystemExit(
                f"{layout.root} holds a run with a different input or config; "
                "use a new --output, or delete it to start over"
            )
        return
    write_json(layout.config, record)


def run(
    input_path: str,
    output: str,
    cfg: PairsiftConfig,
    beam_args: Sequence[str] = (),
    wave_size: int = 4,
) -> RunResult:
    from pairsift.models.translation.langid import normalize_lang
    from pairsift.pipeline.final_model import run_final_model
    from pairsift.pipeline.fit import run_fit
    from pairsift.pipeline.pass1 import run_pass1
    from pairsift.pipeline.pass2 import run_pass2
    from pairsift.pipeline.score_pass import HISTOGRAM_FILE, fit_mixture, run_score_pass
    from pairsift.pipeline.summary import build_summary, load_audit, write_report

    # `pt_BR` and `pt` name one target: stages key captions and embeddings by the normal code
    cfg.translate.target_langs = [normalize_lang(code) for code in cfg.translate.target_langs]
    check_division(cfg)
    layout = RunLayout(output.rstrip("/"))
    options = make_options(beam_args)
    shards = discover_shards(input_path)
    log.info("input: %d shard(s) under %s", len(shards), input_path)
    _check_config(layout, cfg, input_path)
    timings: dict[str, float] = {}
    counters: dict[str, int] = {}

    def stage(name: str, fn: Callable[[], Any]) -> Any:
        start = time.monotonic()
        result = fn()
        timings[name] = time.monotonic() - start
        if isinstance(result, dict) and name in ("pass1", "score", "pass2"):
            for key, value in result.items():
                counters[key] = counters.get(key, 0) + value
        return result

    stage("pass1", lambda: run_pass1(shards, cfg, layout, options, wave_size))
    fit_info = stage("fit", lambda: run_fit(cfg, layout))
    stage("score", lambda: run_score_pass(cfg, layout, options))
    mixture = stage("mixture", lambda: fit_mixture(cfg, layout))
    stage("pass2", lambda: run_pass2(shards, cfg, layout, options))
    audit = load_audit(layout.audit)
    final_info = stage("final_model", lambda: run_final_model(cfg, layout, audit))
    summary = build_summary(
        audit,
        input_pairs_expected=None,
        mixture=mixture,
        fit_info=fit_info,
        timings=timings,
        counters=counters,
        config=cfg.to_dict(),
        keep_labels=list(cfg.output.keep_labels),
    )
    summary["shards"] = {f"{i:05d}": s.name for i, s in enumerate(shards)}
    summary["final_model"] = final_info
    # summary.json holds timings, so it is the one output that differs between runs
    write_json(layout.summary, summary)
    write_report(layout.report, summary, read_json(layout.fit_file(HISTOGRAM_FILE))["counts"])
    return RunResult(layout, summary, timings)
