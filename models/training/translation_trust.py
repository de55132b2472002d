"""How far a target-language caption can be trusted: NRF consistency + UML dual view.

A machine translation can be wrong while the English caption is right (the noise the
cross-lingual view has to catch). Two views judge the target caption ``t_i`` of pair i, each
as a Dirichlet opinion over the same classes — column 0 the pair's own target caption,
columns 1..K the target captions of a fixed bank of K other pairs:

- **translation view** (NRF): the English caption ``x_i`` through the multilingual tower
  against the target captions, similarities cos(x_i, t_·). A faithful translation is the
  closest; a replaced or broken one loses its lead over the bank.
- **image view**: the image through the trained heads against the target captions (the
  ``*_<lang>`` opinion of :func:`pairsift.models.training.scoring.score_batch`).

Multilingual towers place every caption of a language close together (e5 cosines between
unrelated captions sit around 0.7–0.8), so raw cosines make flat evidence. The translation
view therefore standardises each row's similarities by the bank's mean and spread before
evidence e = exp(tanh(z·scale)/τ): a faithful translation stands several spreads above the
bank, a broken one does not. The two opinions are combined by Dempster–Shafer (UML); the
noise score is 1 − the combined belief in the own caption.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pairsift.models.noise.evidential import Opinion, combine, opinion
from pairsift.models.training.heads import ProjectionHeads

DEFAULT_TAU = 0.1
DEFAULT_Z_SCALE = 0.25  # z of 4 bank spreads saturates tanh (≈ 0.76 of its range)


@dataclass
class TrustScores:
    """Per-pair scores of one target language (higher noise score = less trustworthy)."""

    consistency: np.ndarray  # cos(English via the multilingual tower, target caption)
    translation_belief: np.ndarray  # translation view: belief in the own caption
    translation_uncertainty: np.ndarray
    dual_belief: np.ndarray  # Dempster–Shafer combination with the image view
    dual_uncertainty: np.ndarray

    @property
    def noise_score(self) -> np.ndarray:
        return 1.0 - self.dual_belief

    @property
    def translation_noise_score(self) -> np.ndarray:
        return 1.0 - self.translation_belief


def _unit(x: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64))
    return t / t.norm(dim=1, keepdim=True).clamp_min(1e-12)


def _tensor(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))


def _same(rows: np.ndarray, bank: np.ndarray) -> torch.Tensor:
    """[N, K] True where a bank caption's embedding equals the row's (the same caption)."""
    a = np.ascontiguousarray(rows, np.float32)
    b = np.ascontiguousarray(bank, np.float32)
    return torch.from_numpy((a[:, None, :] == b[None, :, :]).all(-1))


def translation_similarities(
    src_ml: np.ndarray, tgt: np.ndarray, bank_tgt: np.ndarray
) -> torch.Tensor:
    """[N, K+1] cosines of each English caption with its own target caption (column 0) and
    the bank's; a bank caption byte-identical to the own one is no rival (floor −1)."""
    if src_ml.shape != tgt.shape:
        raise ValueError(f"source {src_ml.shape} and target {tgt.shape} embeddings differ")
    if not (np.isfinite(src_ml).all() and np.isfinite(tgt).all() and np.isfinite(bank_tgt).all()):
        raise ValueError("translation trust needs finite embeddings")
    src, own, bank = _unit(src_ml), _unit(tgt), _unit(bank_tgt)
    pos = (src * own).sum(-1, keepdim=True)
    rivals = src @ bank.t()
    return torch.cat([pos, rivals.masked_fill(_same(tgt, bank_tgt), -1.0)], dim=1)


def standardise(sims: torch.Tensor) -> torch.Tensor:
    """Each row in units of its bank's spread around the bank's mean (floored rivals left out)."""
    rivals = sims[:, 1:]
    valid = rivals > -1.0
    count = valid.sum(1, keepdim=True).clamp_min(1)
    mean = (rivals * valid).sum(1, keepdim=True) / count
    var = (((rivals - mean) * valid) ** 2).sum(1, keepdim=True) / count
    return (sims - mean) / var.sqrt().clamp_min(1e-6)


def translation_opinion(
    src_ml: np.ndarray, tgt: np.ndarray, bank_tgt: np.ndarray,
    tau: float = DEFAULT_TAU, z_scale: float = DEFAULT_Z_SCALE,
) -> tuple[Opinion, np.ndarray]:
    """The translation view's opinion and the raw consistency cos(x_i, t_i)."""
    sims = translation_similarities(src_ml, tgt, bank_tgt)
    op = opinion(standardise(sims) * z_scale, tau)
    return op, sims[:, 0].numpy()


@torch.no_grad()
def image_view_opinion(
    heads: ProjectionHeads, image: np.ndarray, tgt: np.ndarray, bank_tgt: np.ndarray,
    lang: str, tau: float = DEFAULT_TAU,
) -> Opinion:
    """The image–target view over the same classes: the image through the heads against its
    own target caption and the bank's (as ``score_batch`` builds its ``*_<lang>`` opinion)."""
    img = heads.image(_tensor(image)).double()
    own = heads.text(_tensor(tgt), lang).double()
    bank = heads.text(_tensor(bank_tgt), lang).double()
    pos = (img * own).sum(-1, keepdim=True)
    rivals = (img @ bank.t()).masked_fill(_same(tgt, bank_tgt), -1.0)
    return opinion(torch.cat([pos, rivals], dim=1), tau)


def trust_scores(
    src_ml: np.ndarray, tgt: np.ndarray, bank_tgt: np.ndarray,
    image_view: Opinion | None = None, tau: float = DEFAULT_TAU,
    z_scale: float = DEFAULT_Z_SCALE,
) -> TrustScores:
    """Translation view alone, or combined with the image view (same K+1 classes)."""
    op, cons = translation_opinion(src_ml, tgt, bank_tgt, tau, z_scale)
    dual = op
    if image_view is not None:
        if image_view.num_classes != op.num_classes:
            raise ValueError(
                f"views disagree on classes: {image_view.num_classes} vs {op.num_classes}"
            )
        dual = combine(op, image_view)
    return TrustScores(
        consistency=cons,
        translation_belief=op.belief[:, 0].numpy(),
        translation_uncertainty=op.uncertainty.numpy(),
        dual_belief=dual.belief[:, 0].numpy(),
        dual_uncertainty=dual.uncertainty.numpy(),
    )


def divide_translations(noise_score: np.ndarray, seed: int = 0) -> np.ndarray:
    """Trusted (True) / untrusted translations without ground truth: a two-component
    Gaussian mixture on the noise score, untrusted = the higher-mean component's posterior
    above ½. Returns the trusted mask."""
    from sklearn.mixture import GaussianMixture

    x = np.asarray(noise_score, dtype=np.float64).reshape(-1, 1)
    if x.shape[0] < 2 or float(x.max() - x.min()) == 0.0:
        return np.ones(x.shape[0], dtype=bool)
    gmm = GaussianMixture(n_components=2, reg_covar=1e-6, random_state=seed).fit(x)
    noisy = int(np.argmax(gmm.means_.ravel()))
    return gmm.predict_proba(x)[:, noisy] <= 0.5
