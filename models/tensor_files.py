"""Tensors and JSON under any fsspec path (local, gs://, s3://), written atomically.

The fit writes the heads, the scoring state and the consistency anchors where the run's
output lives; on Dataflow that is a bucket the score pass's workers read, not the
launcher's disk, so these files go through fsspec like every other output
(:mod:`pairsift.pipeline.io.atomic`), and safetensors works on bytes rather than on a local
file name.
"""

from __future__ import annotations

import json
from typing import Any

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from pairsift.pipeline.io.atomic import atomic_open, exists, filesystem, join


def write_tensors(path: str, tensors: dict[str, torch.Tensor]) -> None:
    data = save_safetensors({k: v.detach().cpu().contiguous() for k, v in tensors.items()})
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def read_tensors(path: str) -> dict[str, torch.Tensor]:
    fs, p = filesystem(path)
    with fs.open(p, "rb") as handle:
        return load_safetensors(handle.read())


def write_json_file(path: str, data: Any) -> None:
    with atomic_open(path, "w") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)


def read_json_file(path: str) -> Any:
    fs, p = filesystem(path)
    with fs.open(p, "r") as handle:
        return json.load(handle)


__all__ = ["exists", "join", "read_json_file", "read_tensors", "write_json_file", "write_tensors"]
