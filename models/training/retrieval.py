"""The final retrieval model: frozen towers named by spec + the trained projection heads.

Saved as ``config.json`` + ``model.safetensors`` (heads only: the towers are rebuilt from
their specs, so the file stays small and loading never unpickles code).
``RetrievalModel.load(directory)`` is the one call a user needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from PIL import Image

from pairsift.models.training.heads import ProjectionHeads, heads_from_config, write_heads

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


@dataclass
class RetrievalConfig:
    encoder_spec: str
    heads: dict[str, Any]
    image_size: int | None = None
    multilingual_spec: str | None = None
    languages: list[str] = field(default_factory=list)
    trained_with: dict[str, Any] = field(default_factory=dict)  # method, noise figures, data


def save_retrieval_model(directory: str, heads: ProjectionHeads, config: RetrievalConfig) -> None:
    write_heads(heads, directory, WEIGHTS_FILE, CONFIG_FILE, asdict(config))


def load_heads_from_model(directory: str) -> tuple[ProjectionHeads, RetrievalConfig]:
    from pairsift.models.storage.tensor_files import join, read_json, read_tensors

    config = RetrievalConfig(**read_json(join(directory, CONFIG_FILE)))
    heads = heads_from_config(config.heads)
    heads.load_state_dict(read_tensors(join(directory, WEIGHTS_FILE)))
    heads.eval()
    return heads, config


class RetrievalModel:
    """Embeds images and captions into the shared space the heads were trained for."""

    def __init__(self, heads: ProjectionHeads, config: RetrievalConfig, device: str = "cpu") -> None:
        from pairsift.models.encoders.factory import build_encoder, build_text_encoder

        self.heads, self.config, self.device = heads.to(device), config, device
        self.encoder = build_encoder(config.encoder_spec, device=device, image_size=config.image_size)
        self.multilingual = (
            build_text_encoder(config.multilingual_spec, device=device)
            if config.multilingual_spec and config.languages else None
        )

    @classmethod
    def load(cls, directory: str, device: str = "cpu") -> RetrievalModel:
        heads, config = load_heads_from_model(directory)
        return cls(heads, config, device)

    @torch.no_grad()
    def encode_images(self, images: Sequence[Image.Image]) -> torch.Tensor:
        transform = self.encoder.image_transform()
        pixels = torch.stack([transform(im.convert("RGB")) for im in images]).to(self.device)
        return self.heads.image(self.encoder.encode_images(pixels))

    @torch.no_grad()
    def encode_texts(self, texts: Sequence[str], lang: str | None = None) -> torch.Tensor:
        if lang is None:
            return self.heads.text(self.encoder.encode_texts(list(texts)))
        if self.multilingual is None:
            raise ValueError(f"this model has no target-language tower (languages: {self.config.languages})")
        return self.heads.text(self.multilingual.encode_texts(list(texts)), lang=lang)
