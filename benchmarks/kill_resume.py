"""`pairsift bench kill-resume`: kill -9 a run at random moments in every stage, rerun it, and
check that the curated shards and the audit come out byte-identical to an uninterrupted run.

Each trial starts `pairsift run` in a fresh OUT, waits for the log line that starts the
chosen stage, sleeps a random share of that stage's duration in the reference run, and sends
SIGKILL to the whole process group. The same command is then run to the end, and every file
under OUT/shards and OUT/audit is compared with the reference run's by SHA-256. Moments are
spread over the stages (pass 1, fit, score, mixture, pass 2, final model) round-robin, with a
seeded draw inside each, so a trial list is reproducible.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

STAGES = ("pass1", "dedup", "fit", "score", "mixture", "pass2", "tally", "final_model")
COMPARED = ("shards", "audit")


@dataclass
class Trial:
    stage: str
    share: float  # of the stage's reference duration, at which the kill lands
    killed: bool = False  # False when the stage ended before the kill landed
    seconds_in: float = 0.0
    identical: bool = False
    differing: tuple[str, ...] = ()


def run_command(input_path: str, out: str, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "pairsift.pipeline.cli", "run", "--input", input_path,
            "--output", out, *extra]


def timed_run(command: list[str], log_path: Path) -> dict[str, float]:
    """Run to the end; the time each stage's start line appeared, from the start."""
    start, starts = time.monotonic(), {}
    with open(log_path, "w") as log, subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as proc:
        for line in proc.stdout:
            log.write(line)
            stage = _stage_started(line)
            if stage:
                starts[stage] = time.monotonic() - start
        if proc.wait() != 0:
            raise SystemExit(f"the reference run failed; see {log_path}")
    starts["end"] = time.monotonic() - start
    return starts


def _stage_started(line: str) -> str | None:
    for stage in STAGES:
        if f" {stage}: starting" in line:
            return stage
    return None


def kill_during(command: list[str], stage: str, delay: float, log_path: Path) -> tuple[bool, float]:
    """Start the run; SIGKILL it ``delay`` seconds after ``stage`` starts. Returns whether
    the kill landed before the run ended, and when (seconds after the stage began)."""
    with open(log_path, "w") as log, subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    ) as proc:
        for line in proc.stdout:
            log.write(line)
            if _stage_started(line) == stage:
                began = time.monotonic()
                time.sleep(delay)
                landed = proc.poll() is None
                if landed:
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                return landed, time.monotonic() - began
        proc.wait()
    return False, 0.0


def digests(out: Path) -> dict[str, str]:
    found = {}
    for folder in COMPARED:
        for path in sorted((out / folder).rglob("*")):
            if path.is_file():
                found[str(path.relative_to(out))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def plan(trials: int, durations: dict[str, float], seed: int) -> list[Trial]:
    rng = random.Random(seed)
    return [Trial(STAGES[i % len(STAGES)], rng.uniform(0.05, 0.95)) for i in range(trials)]


def stage_durations(starts: dict[str, float]) -> dict[str, float]:
    order = [s for s in STAGES if s in starts] + ["end"]
    return {a: starts[b] - starts[a] for a, b in zip(order, order[1:], strict=False)}


def run_trials(args: argparse.Namespace) -> list[Trial]:
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    extra = [*(["--config", args.config] if args.config else []), "--wave-size", "2"]
    starts = timed_run(run_command(args.input, str(work / "reference"), extra), work / "reference.log")
    durations = stage_durations(starts)
    print("reference stages (s): " + ", ".join(f"{k} {v:.2f}" for k, v in durations.items()))
    reference = digests(work / "reference")
    trials = plan(args.trials, durations, args.seed)
    for i, trial in enumerate(trials):
        out = work / f"trial{i}"
        command = run_command(args.input, str(out), extra)
        delay = trial.share * durations.get(trial.stage, 0.0)
        trial.killed, trial.seconds_in = kill_during(command, trial.stage, delay, work / f"trial{i}.log")
        timed_run(command, work / f"trial{i}.resume.log")
        got = digests(out)
        trial.differing = tuple(sorted(k for k in set(got) | set(reference) if got.get(k) != reference.get(k)))
        trial.identical = not trial.differing
        print(f"trial {i}: kill -9 {trial.seconds_in:.2f} s into {trial.stage} "
              f"({'landed' if trial.killed else 'stage ended first'}); rerun: "
              f"{'identical' if trial.identical else 'DIFFERS ' + ', '.join(trial.differing[:4])}",
              flush=True)
        shutil.rmtree(out, ignore_errors=True)
    return trials


def main(args: argparse.Namespace) -> int:
    trials = run_trials(args)
    landed = [t for t in trials if t.killed]
    same = sum(t.identical for t in trials)
    print(f"{len(landed)} of {len(trials)} kills landed, in stages "
          f"{sorted({t.stage for t in landed})}; {same} of {len(trials)} reruns byte-identical "
          f"to the uninterrupted run ({', '.join(COMPARED)})")
    return 0 if same == len(trials) else 1


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("kill-resume", help="kill -9 runs at random moments, rerun, compare bytes")
    parser.add_argument("--input", required=True, help="the run's input")
    parser.add_argument("--work", required=True, help="a scratch folder for the runs (emptied first)")
    parser.add_argument("--config", help="the run's config file")
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(func=main)
