"""The flex template's program: `pairsift run` with the flags the launcher passes.

Dataflow's Python template launcher runs this file (FLEX_TEMPLATE_PYTHON_PY_FILE in
deploy/Dockerfile.launcher) with the template's parameters as ``--name=value`` flags and
``--template_location``; `pairsift run` then writes the run's single-worker driver job there
(pipeline/driver_job.py) and exits, and the launcher submits that job.

Three flags get a default when the launch does not give them: ``--runner`` (a flex launch
always targets Dataflow) and the two worker images the launcher image was built with
(``PAIRSIFT_GPU_WORKER_IMAGE`` for pass 1, ``PAIRSIFT_CPU_WORKER_IMAGE`` for the driver job and
every other job), so that a launch needs no image names. A parameter of the same name wins.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence

# (flag, where its default comes from): a literal, or the environment variable named
DEFAULTS = (
    ("--runner", "DataflowRunner", None),
    ("--sdk_container_image", None, "PAIRSIFT_GPU_WORKER_IMAGE"),
    ("--cpu_sdk_container_image", None, "PAIRSIFT_CPU_WORKER_IMAGE"),
)


def is_given(argv: Sequence[str], flag: str) -> bool:
    return any(arg == flag or arg.startswith(flag + "=") for arg in argv)


def launch_argv(argv: Sequence[str], environ: Mapping[str, str] = os.environ) -> list[str]:
    """`pairsift run`'s argv: the launcher's flags, plus the defaults they leave out."""
    out = list(argv)
    for flag, value, variable in DEFAULTS:
        default = environ.get(variable, "") if variable else value
        if default and not is_given(out, flag):
            out.append(f"{flag}={default}")
    return ["run", *out]


def main() -> int:
    from pairsift.pipeline.cli import main as pairsift_main

    return pairsift_main(launch_argv(sys.argv[1:]))


if __name__ == "__main__":
    sys.exit(main())
