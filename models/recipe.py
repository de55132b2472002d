"""The method as a named recipe: every knob of the noise model, the division and the trainer.

A recipe is a JSON (or YAML) file, like open_clip's model configs: the packaged ones live in
``models/configs/recipes/`` (``pairsift.json`` is the default method, written out in full;
each ablation and each baseline trainer is a recipe that names a ``base`` and changes a few
keys). A run config names its recipe (``recipe: pairsift``, or a path to a file of one's
own); the benchmark's ablation rows are these same recipes.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from pairsift.models.dataclass_tree import build_dataclass

RECIPE_DIR = "configs/recipes"
_META_KEYS = ("name", "description", "base")


@dataclass
class MixtureConfig:
    bins: int = 2048
    eps: float = 1e-3
    max_iter: int = 200
    tol: float = 1e-6
    partial_noise: bool = True  # split the noisy component into partial / complete noise
    # "moments": EM with the weighted method-of-moments M-step only; "moments_mle": then refine
    # with weighted maximum-likelihood M-steps (MoM alone can stall with a heavy-tailed clean
    # component that absorbs a share of the noise).
    m_step: str = "moments_mle"
    partial_min_weight: float = 0.05  # each noisy sub-component must hold this share of noise
    partial_min_separation: float = 0.15  # and their means differ by this (normalised loss)
    # A beta fit with a component below this weight, or one that is flat or U-shaped
    # (α and β both below ``flat_shape``), models the tails rather than a population of pairs;
    # then the division uses a Gaussian mixture on the same histogram ("none": keep the beta fit).
    fallback: str = "gaussian"
    min_component_weight: float = 0.05
    flat_shape: float = 1.2
    # "shuffled": the clean posterior and noise ratio come from an empirical null, the losses
    # of pairs given another pair's caption (models/noise/null.py); "none": the two components
    null_model: str = "shuffled"
    null_lambda: float = 0.75  # Storey's λ: the null quantile above which noise is counted
    # a null reading a noise share at or above this gives every pair p_clean ≈ 0 and starves
    # the robust phase: the posterior then comes from the two components (π0 stays the null's)
    null_max_ratio: float = 0.95


@dataclass
class ConsistencyConfig:
    """Neighbour consistency fused with the loss posterior (models/noise/consistency.py)."""

    # needs the empirical null (mixture.null_model "shuffled"): its π0 separates f1 from f0
    enabled: bool = True
    neighbours: int = 30  # k nearest anchors per side
    max_anchors: int = 20_000  # anchors drawn from the fit pairs
    probes: int = 8  # IVF lists searched per query (about √anchors lists); 0: exact search
    bins: int = 400  # histogram bins over the consistency range [-2, 2]
    # the division multiplies the loss posterior's noise odds by Λ**weight: the two views
    # both ask whether the caption fits the image and are not independent given the class, so
    # Λ itself counts shared evidence twice (docs/noise_modelling.md has the measured choice)
    weight: float = 0.5


@dataclass
class DivisionConfig:
    method: str = "pairsift"  # pairsift | bmm | gmm | clip_score | none
    clean_threshold: float = 0.5  # posterior of the clean component for "clean"
    uncertainty_threshold: float = 0.5  # absolute u_thr, used when uncertainty_quantile is None
    # u_thr = this quantile of u over the pairs the mixture keeps (relative: u's scale moves
    # with K, τ and the heads; an absolute ½ never fired with 64 negatives). u < u_thr → determined
    uncertainty_quantile: float | None = 0.5
    use_uncertainty: bool = True
    # off by default, like refurbish, fisher_soften and train.trusted_margin: no measured gain
    # (docs/noise_modelling.md, "Which components earn their keep")
    self_correction: bool = False
    dual_view: bool = True  # combine image–English and image–target opinions (UML)
    keep_fraction: float = 0.7  # clip_score baseline: share of pairs kept by similarity
    similarity_threshold: float | None = None  # clip_score: keep similarity >= this (row-wise)
    refurbish: bool = False  # soft labels: RCAR refurbished targets
    fisher_soften: bool = False  # soft labels: UML Fisher softening
    mixture_agrees: bool = True  # determined clean/noisy need the mixture to agree, else hard
    noisy_posterior: float = 0.5  # an undetermined pair with p_clean below this is noisy
    # which pairs are dropped: "posterior", p_clean < noisy_posterior (undetermined pairs) or
    # a determined mismatch the mixture doubts; "noise_share", with an empirical null, every
    # pair whose loss is above the (1 − π0) quantile (kept count = estimated clean count);
    # "both", dropped by either rule
    keep_rule: str = "both"
    memory_window: int = 3  # epochs of uncertainty kept per pair (self-correction)
    fluctuation_threshold: float = 0.1  # u range over the window that marks a pair unstable


@dataclass
class TrainConfig:
    """Projection heads and the robust trainer (shared by the fit step and `pairsift train`);
    ``loss`` names the training recipe (models/training/recipes.py)."""

    head_dim: int = 256
    warmup_epochs: int = 3
    epochs: int = 10
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    margin: float = 0.2
    temperature: float = 0.05
    evidence_tau: float = 0.1
    num_negatives: int = 64  # fixed bank of sampled negatives per pair for scoring
    loss: str = "pairsift"  # pairsift | ncr | decl | rcl | contrastive
    co_teaching: bool = False
    mutual_learning: bool = True  # UML adaptive mutual learning (needs a target language)
    trusted_margin: bool = False  # UCPM trusted margin loss (off: no measured gain)
    patience: int = 3
    warmup_topk: int = 8  # hinge averages the top-k negatives in warm-up, hardest after
    trusted_margin_power: float = 1.0  # hard-pair margin shrink ((1-u)/(1-u_thr))**p
    kl_weight: float = 0.1  # evidential KL term (annealed over warm-up)
    mutual_weight: float = 0.5  # weight of the UML mutual-learning term
    complementary_weight: float = 0.5  # RCL term on pairs judged noisy
    push_margin: float = 0.2  # mutual learning: noisy target caption kept below this cosine
    translation_trust: bool = True  # NRF: weigh target views by agreement with the source
    # pairsift: divide with k fold heads, each scoring the pairs it never trained on
    # (0 or 1: score with the main heads, in-sample)
    division_folds: int = 4
    crossfit_max_pairs: int = 2000  # larger sets divide in-sample (memorised less, k× cheaper)
    # OUT/model: heads retrained on the kept pairs with this loss ("none": the fit heads)
    final_loss: str = "contrastive"
    final_min_pairs: int = 50  # retrain only when at least this many pairs were kept
    # each kept pair's loss weighted by p_clean**power (0: unweighted): the noise left in the
    # kept set sits among the lowest posteriors
    final_weight_power: float = 4.0
    robust_topk: int = 8  # robust phase hinge: mean over the top-k in-batch negatives
    # centre a tower's embeddings inside the heads (models/training/heads.py): "auto" does it for towers
    # whose rows' mean cosine exceeds centre_threshold, never for identity-initialised heads;
    # "always" | "never". Measured (docs/noise_modelling.md, "Centred inputs"): e5 0.82 collapses
    # the division uncentred; synth's towers 0.55-0.59 divide worse centred; tuxpaint's 0.28
    centre_inputs: str = "auto"
    centre_threshold: float = 0.7


@dataclass
class Recipe:
    """A named method: the mixture, the neighbour consistency, the division and the trainer."""

    name: str = "pairsift"
    description: str = ""
    mixture: MixtureConfig = field(default_factory=MixtureConfig)
    consistency: ConsistencyConfig = field(default_factory=ConsistencyConfig)
    division: DivisionConfig = field(default_factory=DivisionConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


SECTIONS: dict[str, type] = {
    "mixture": MixtureConfig, "consistency": ConsistencyConfig,
    "division": DivisionConfig, "train": TrainConfig,
}


def recipe_names() -> list[str]:
    """The packaged recipes, by name."""
    folder = resources.files("pairsift.models").joinpath(RECIPE_DIR)
    return sorted(p.name[: -len(".json")] for p in folder.iterdir() if p.name.endswith(".json"))


def _read_recipe_file(name_or_path: str) -> dict[str, Any]:
    """A packaged recipe by name, or a recipe file (.json / .yaml / .yml) by path."""
    if name_or_path.endswith((".json", ".yaml", ".yml")) or "/" in name_or_path:
        path = Path(name_or_path)
        if not path.is_file():
            raise ValueError(f"recipe file {name_or_path!r} not found")
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".json":
            return json.loads(text)
        import yaml

        return yaml.safe_load(text) or {}
    names = recipe_names()
    if name_or_path not in names:
        close = difflib.get_close_matches(name_or_path, names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown recipe {name_or_path!r}{hint} (packaged: {', '.join(names)}; "
                         "or give a path to a recipe file)")
    text = resources.files("pairsift.models").joinpath(RECIPE_DIR, f"{name_or_path}.json")
    return json.loads(text.read_text(encoding="utf-8"))


def recipe_changes(name_or_path: str, _seen: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
    """The recipe's section values, its bases' merged beneath them (base first)."""
    if name_or_path in _seen:
        raise ValueError(f"recipe bases loop: {' -> '.join([*_seen, name_or_path])}")
    data = _read_recipe_file(name_or_path)
    unknown = sorted(set(data) - set(SECTIONS) - set(_META_KEYS))
    if unknown:
        raise ValueError(f"unknown recipe key(s) {unknown} in {name_or_path!r}; "
                         f"sections are {sorted(SECTIONS)}")
    merged: dict[str, dict[str, Any]] = {}
    if data.get("base"):
        merged = recipe_changes(str(data["base"]), (*_seen, name_or_path))
    for section in SECTIONS:
        merged.setdefault(section, {}).update(data.get(section) or {})
    return merged


def changes_from_default(name_or_path: str) -> dict[str, dict[str, Any]]:
    """What the recipe sets differently from the default method, by section (sections it
    leaves alone are absent): the changes an ablation or a baseline trainer makes."""
    default = recipe_changes("pairsift")
    own = {
        section: {k: v for k, v in values.items() if default[section].get(k) != v}
        for section, values in recipe_changes(name_or_path).items()
    }
    return {section: values for section, values in own.items() if values}


def load_recipe(name_or_path: str) -> Recipe:
    """The :class:`Recipe` a name or file stands for (unknown keys are errors)."""
    data = _read_recipe_file(name_or_path)
    sections = {
        section: build_dataclass(cls, values, prefix=f"{section}.")
        for (section, cls), values in zip(
            SECTIONS.items(), recipe_changes(name_or_path).values(), strict=True
        )
    }
    return Recipe(name=str(data.get("name", name_or_path)),
                  description=str(data.get("description", "")), **sections)
