"""Aligned (CLIP-style) encoders: open_clip models and transformers CLIP/SigLIP.

Both load weights the libraries' usual way (``pretrained=`` tag or local file for
open_clip, ``from_pretrained`` repo id or folder for transformers). Pass no tag for a
random-init open_clip model: what the tests and throughput benchmarks use.
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any

import torch

from pairsift.models.encoders.base import (
    ImageTransform,
    PairEncoder,
    freeze,
    make_transform,
)

# open_clip configs shipped with pairsift (tiny test towers), registered on first use.
CONFIG_PACKAGE = "pairsift.models"


@functools.lru_cache(maxsize=1)
def register_bundled_configs() -> None:
    import open_clip

    folder = resources.files(CONFIG_PACKAGE) / "configs"
    if folder.is_dir():
        with resources.as_file(folder) as path:
            open_clip.add_model_config(path)


def _open_clip_preprocess_cfg(name: str, tag: str | None) -> dict[str, Any]:
    import open_clip

    register_bundled_configs()
    config = open_clip.get_model_config(name)
    if config is None:
        raise ValueError(
            f"unknown open_clip model {name!r}; see open_clip.list_models() "
            "or add a JSON config with open_clip.add_model_config"
        )
    cfg: dict[str, Any] = {
        "size": config["vision_cfg"].get("image_size", 224),
        "mean": open_clip.OPENAI_DATASET_MEAN,
        "std": open_clip.OPENAI_DATASET_STD,
        "interpolation": "bicubic",
    }
    pretrained = open_clip.get_pretrained_cfg(name, tag) if tag else {}
    for key in ("mean", "std", "interpolation"):
        if pretrained.get(key):
            cfg[key] = pretrained[key]
    return cfg


def open_clip_transform(name: str, tag: str | None, image_size: int | None = None) -> ImageTransform:
    """The eval transform of an open_clip model, without building the model."""
    cfg = _open_clip_preprocess_cfg(name, tag)
    size = image_size or cfg["size"]
    return make_transform(size, cfg["mean"], cfg["std"], cfg["interpolation"])


class OpenClipEncoder(PairEncoder):
    """``open_clip:NAME/TAG`` (pretrained) or ``open_clip:NAME`` (random init)."""

    aligned = True

    def __init__(
        self,
        spec: str,
        name: str,
        tag: str | None,
        device: str = "cpu",
        precision: str = "auto",
        image_size: int | None = None,
    ) -> None:
        import open_clip

        super().__init__(spec, device, precision)
        register_bundled_configs()
        model, _, _ = open_clip.create_model_and_transforms(
            name, pretrained=tag, force_image_size=image_size, device=self.device
        )
        self.model = freeze(model)
        self.tokenizer = open_clip.get_tokenizer(name)
        self._transform = open_clip_transform(name, tag, image_size)
        dim = int(open_clip.get_model_config(name)["embed_dim"])
        self.image_dim = self.text_dim = dim

    def image_transform(self) -> ImageTransform:
        return self._transform

    def _image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(pixels)

    def _text_features(self, texts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(texts).to(self.device)
        return self.model.encode_text(tokens)

    def _modules(self) -> list[torch.nn.Module]:
        return [self.model]


# --- transformers CLIP / SigLIP ---------------------------------------------------------

_PIL_RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}


def hf_image_transform(path: str, image_size: int | None = None) -> ImageTransform:
    """The eval transform an ``AutoImageProcessor`` describes, as torchvision ops.

    One CHW tensor per image (what a Beam DoFn emits) instead of the processor's batch API.
    """
    from transformers import AutoImageProcessor

    proc = AutoImageProcessor.from_pretrained(path)
    size = _as_dict(getattr(proc, "size", None))
    crop = _as_dict(getattr(proc, "crop_size", None))
    do_crop = bool(getattr(proc, "do_center_crop", False)) and bool(crop)
    interpolation = _PIL_RESAMPLE.get(int(getattr(proc, "resample", 3) or 3), "bicubic")
    mean = getattr(proc, "image_mean", None) or (0.5, 0.5, 0.5)
    std = getattr(proc, "image_std", None) or (0.5, 0.5, 0.5)
    if image_size:
        return make_transform(image_size, mean, std, interpolation, squash=not do_crop)
    if do_crop:
        target = (crop["height"], crop["width"])
        short = size.get("shortest_edge", min(target))
        return make_transform(target, mean, std, interpolation, crop_pct=min(target) / short)
    if "height" in size:
        return make_transform((size["height"], size["width"]), mean, std, interpolation, squash=True)
    edge = size.get("shortest_edge", 224)
    return make_transform(edge, mean, std, interpolation)


def _as_dict(value: Any) -> dict[str, int]:
    if value is None:
        return {}
    if isinstance(value, int):
        return {"height": value, "width": value}
    if isinstance(value, dict):
        return dict(value)
    return {k: v for k, v in vars(value).items() if isinstance(v, int)}


def _pooled(output: Any) -> torch.Tensor:
    """transformers ≥5 returns a model output from get_*_features; 4.x a tensor."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


class HFClipEncoder(PairEncoder):
    """``hf:REPO_OR_PATH`` for a transformers model with image and text features."""

    aligned = True

    def __init__(
        self,
        spec: str,
        path: str,
        device: str = "cpu",
        precision: str = "auto",
        image_size: int | None = None,
    ) -> None:
        from transformers import AutoModel, AutoTokenizer

        super().__init__(spec, device, precision)
        model = AutoModel.from_pretrained(path)
        if not (hasattr(model, "get_image_features") and hasattr(model, "get_text_features")):
            raise ValueError(
                f"{path} ({type(model).__name__}) has no image tower; use it as a text tower: "
                f"towers:image=timm:NAME,text=hf:{path} or as a multilingual spec"
            )
        self.model = freeze(model.to(self.device))
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        config = model.config
        self.model_type = str(config.model_type)
        self._pad_to_max = self.model_type.startswith("siglip")  # SigLIP trained on fixed length
        text_positions = getattr(config.text_config, "max_position_embeddings", 77)
        self._max_length = min(int(self.tokenizer.model_max_length or text_positions), text_positions)
        native = getattr(config.vision_config, "image_size", None)
        self._interpolate = bool(image_size) and image_size != native
        self._transform = hf_image_transform(path, image_size)
        dim = getattr(config, "projection_dim", None) or config.text_config.hidden_size
        self.image_dim = self.text_dim = int(dim)

    def image_transform(self) -> ImageTransform:
        return self._transform

    def _image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        kwargs = {"interpolate_pos_encoding": True} if self._interpolate else {}
        return _pooled(self.model.get_image_features(pixel_values=pixels, **kwargs))

    def _text_features(self, texts: list[str]) -> torch.Tensor:
        batch = self.tokenizer(
            texts,
            padding="max_length",  # a caption's tokens never depend on its batch-mates
            truncation=True,
            max_length=self._max_length,
            return_tensors="pt",
        ).to(self.device)
        kwargs = {"input_ids": batch["input_ids"]}
        if "attention_mask" in batch and not self._pad_to_max:
            kwargs["attention_mask"] = batch["attention_mask"]
        return _pooled(self.model.get_text_features(**kwargs))

    def _modules(self) -> list[torch.nn.Module]:
        return [self.model]
