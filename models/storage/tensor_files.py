"""Tensors and JSON under any fsspec path (local, gs://, s3://), written atomically.

The fit writes the heads, the scoring state and the consistency anchors where the run's
output lives; on Dataflow that is a bucket the score pass's workers read, not the
launcher's disk, so these files go through fsspec like every other output
(:mod:`pairsift.models.storage.atomic`), and safetensors works on bytes rather than on a local
file name.
"""

from __future__ import annotations

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from pairsift.models.storage.atomic import (
    atomic_open,
    exists,
    filesystem,
    join,
    read_json,
    write_json,
)


def write_tensors(path: str, tensors: dict[str, torch.Tensor]) -> None:
    data = save_safetensors({k: v.detach().cpu().contiguous() for k, v in tensors.items()})
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def read_tensors(path: str) -> dict[str, torch.Tensor]:
    fs, p = filesystem(path)
    with fs.open(p, "rb") as handle:
        return load_safetensors(handle.read())


# the JSON beside the tensors goes through the project's own atomic JSON helpers
__all__ = ["exists", "join", "read_json", "read_tensors", "write_json", "write_tensors"]
