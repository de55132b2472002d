"""Learned projection heads on top of frozen towers.

One linear head per tower: image, English text, and one per target language fed by the
multilingual text tower. Linear keeps the heads identity-initialisable, so when the towers
are already aligned (a pretrained CLIP) training starts from the towers' own geometry.

An input may be *centred*: its tower's mean embedding (a fixed buffer saved with the heads)
is subtracted and the result re-normalised before the linear map. Towers such as e5 put every
text within a narrow cone (mean cosine 0.8 between unrelated captions); from there the few
optimiser steps a small set gets never spread the pairs apart, and the division collapses
(docs/noise_modelling.md, "Centred inputs"). Centring is a reparametrisation, not more
capacity: W(x − c) + b is still affine in x up to the re-normalisation.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

HEADS_JSON = "heads.json"
HEADS_WEIGHTS = "heads.safetensors"


def _linear(in_dim: int, out_dim: int, identity: bool) -> nn.Linear:
    layer = nn.Linear(in_dim, out_dim)
    if identity:
        if in_dim != out_dim:
            raise ValueError(
                f"identity heads need matching dims, got {in_dim} -> {out_dim}; "
                "use identity=False for towers of another width"
            )
        with torch.no_grad():
            layer.weight.copy_(torch.eye(out_dim))
            layer.bias.zero_()
    return layer


class ProjectionHeads(nn.Module):
    """Maps raw tower embeddings into one shared, L2-normalised space.

    ``identity`` starts the image and English heads as the identity (their dims must equal
    ``out_dim``); a target-language head starts as the identity only where its dim matches,
    since a separate multilingual tower is rarely aligned with the image tower anyway.
    """

    def __init__(
        self,
        image_dim: int,
        text_dim: int,
        out_dim: int,
        identity: bool = False,
        target_text_dims: dict[str, int] | None = None,
        centred: list[str] | None = None,
    ) -> None:
        super().__init__()
        self.config: dict[str, Any] = {
            "image_dim": int(image_dim),
            "text_dim": int(text_dim),
            "out_dim": int(out_dim),
            "identity": bool(identity),
            "target_text_dims": {k: int(v) for k, v in sorted((target_text_dims or {}).items())},
        }
        dims = {"image": int(image_dim), "text": int(text_dim), **self.config["target_text_dims"]}
        unknown = sorted(set(centred or []) - set(dims))
        if unknown:
            raise ValueError(f"cannot centre {unknown}: inputs are {sorted(dims)}")
        if centred:  # absent from the config (and the state) when nothing is centred
            self.config["centred"] = sorted(centred)
            for name in self.config["centred"]:
                self.register_buffer(f"centre_{name}", torch.zeros(dims[name]))
        self.image_head = _linear(image_dim, out_dim, identity)
        self.text_head = _linear(text_dim, out_dim, identity)
        self.target_heads = nn.ModuleDict(
            {
                lang: _linear(dim, out_dim, identity and dim == out_dim)
                for lang, dim in self.config["target_text_dims"].items()
            }
        )

    @property
    def languages(self) -> list[str]:
        return list(self.target_heads.keys())

    @property
    def centred(self) -> list[str]:
        return list(self.config.get("centred", []))

    def set_centre(self, name: str, mean: torch.Tensor) -> None:
        """Fix input ``name``'s centre (its tower's mean embedding over the training rows)."""
        if name not in self.centred:
            raise KeyError(f"input {name!r} is not centred; centred: {self.centred}")
        buffer = getattr(self, f"centre_{name}")
        buffer.copy_(torch.as_tensor(mean, dtype=buffer.dtype).reshape(buffer.shape))

    def _project(self, head: nn.Linear, x: torch.Tensor, name: str) -> torch.Tensor:
        x = x.to(head.weight.dtype)
        if name in self.config.get("centred", ()):
            x = F.normalize(x - getattr(self, f"centre_{name}"), dim=-1)
        return F.normalize(head(x), dim=-1)

    @torch.no_grad()
    def embed_pairs(self, image: np.ndarray, text: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """A set of pairs' image and English caption embeddings through the heads, without
        gradients (retrieval figures, a baseline's per-pair statistics)."""
        return (self.image(torch.from_numpy(np.asarray(image, dtype=np.float32))),
                self.text(torch.from_numpy(np.asarray(text, dtype=np.float32))))

    def image(self, x: torch.Tensor) -> torch.Tensor:
        return self._project(self.image_head, x, "image")

    def text(self, x: torch.Tensor, lang: str | None = None) -> torch.Tensor:
        """English head when ``lang`` is None, else the target-language head."""
        if lang is None:
            return self._project(self.text_head, x, "text")
        if lang not in self.target_heads:
            raise KeyError(f"no head for language {lang!r}; have {self.languages}")
        return self._project(self.target_heads[lang], x, lang)


def save_heads(heads: ProjectionHeads, directory: str) -> None:
    """Write heads.safetensors + heads.json (the constructor arguments)."""
    write_heads(heads, directory, HEADS_WEIGHTS, HEADS_JSON, heads.config)


def write_heads(
    heads: ProjectionHeads, directory: str, weights_name: str, json_name: str, config: dict[str, Any]
) -> None:
    """Heads' weights (safetensors) + a JSON config, each written under a temp name and renamed
    (any fsspec path: :mod:`pairsift.models.storage.tensor_files`)."""
    from pairsift.models.storage.tensor_files import join, write_json, write_tensors

    write_tensors(join(directory, weights_name), dict(heads.state_dict()))
    write_json(join(directory, json_name), config)


def load_heads(directory: str) -> ProjectionHeads:
    """Rebuild heads from a directory written by :func:`save_heads`."""
    from pairsift.models.storage.tensor_files import join, read_json, read_tensors

    heads = heads_from_config(read_json(join(directory, HEADS_JSON)))
    heads.load_state_dict(read_tensors(join(directory, HEADS_WEIGHTS)))
    heads.eval()
    return heads


def heads_from_config(config: dict[str, Any]) -> ProjectionHeads:
    """Empty heads of the shape ``config`` (a heads' ``config``) describes, to load weights into."""
    heads = ProjectionHeads(
        config["image_dim"],
        config["text_dim"],
        config["out_dim"],
        identity=False,
        target_text_dims=config.get("target_text_dims") or None,
        centred=config.get("centred") or None,
    )
    heads.config["identity"] = bool(config.get("identity", False))
    return heads
