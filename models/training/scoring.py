"""Per-pair scores that do not depend on batch order.

Each pair is compared with a fixed bank of K negative pairs drawn once from the data, not with
its batch neighbours, so a pair scores the same in any batch, on any worker, in any order.
A bank member that is byte-identical to the scored caption (or image) is not a negative: its
similarity is set to the floor (−1) so duplicates never count against their own pair.

Keys per view (suffix "" for image–English, "_<lang>" for image–target language):
``similarity``, ``loss`` = log(1 + CE) with CE the two-way contrastive cross-entropy against
the bank (bounded, see :func:`loss_range`; the log keeps both populations beta-shaped: raw CE
piles clean pairs into the first bins with a long tail while noise spreads over a range ten
times wider, and two betas then fit it badly), ``ce`` (the raw CE), ``hinge`` (two-way hardest-negative hinge), ``belief``, ``uncertainty``,
``alpha_self``, ``alpha_total``, ``match_prob`` (α_self/S), ``belief_neg_max``, ``top``
(1.0 when the own caption holds the largest belief). With target views, ``*_dual`` keys hold
the Dempster–Shafer combination of all views (UML), and ``translation_consistency[_<lang>]``
the cosine between the English caption via the multilingual tower and the target caption.
When that cosine is available, each target view's opinion is trust-discounted by it (clipped
to [0, 1]) before the combination (NRF: a translation counts as far as it agrees with its
source).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from pairsift.models.config import TrainConfig
from pairsift.models.noise.evidential import Opinion, combine, discount, opinion
from pairsift.models.training.heads import ProjectionHeads, load_heads, save_heads

if TYPE_CHECKING:
    from pairsift.models.pairdata import PairEmbeddings

SCORING_JSON = "scoring.json"
BANK_WEIGHTS = "bank.safetensors"
_CHUNK = 4096


@dataclass
class ScoringState:
    """Heads plus the fixed negative bank (raw tower embeddings) and scoring constants."""

    heads: ProjectionHeads
    bank_image: np.ndarray
    bank_text: np.ndarray
    bank_text_tgt: dict[str, np.ndarray] = field(default_factory=dict)
    tau: float = 0.1
    margin: float = 0.2
    temperature: float = 0.05
    # cross-fitting (train.division_folds): fold f's heads score the pairs whose key falls in
    # fold f (:func:`fold_of_keys`), i.e. pairs those heads never trained on
    fold_heads: list[ProjectionHeads] = field(default_factory=list)
    _heads64: ProjectionHeads | None = field(default=None, repr=False, compare=False)

    def heads64(self) -> ProjectionHeads:
        """A float64 copy of the heads: a row's scores then agree across batch sizes to far
        below the float32 precision they are reported in. Built on first use: build a new
        state after changing the heads."""
        if self._heads64 is None:
            self._heads64 = copy.deepcopy(self.heads).double().eval()
        return self._heads64

    @property
    def num_negatives(self) -> int:
        return int(self.bank_image.shape[0])

    def for_fold(self, fold: int) -> ScoringState:
        """The same bank and constants with fold ``fold``'s heads."""
        return dataclasses.replace(
            self, heads=self.fold_heads[fold], fold_heads=[], _heads64=None
        )

    def save(self, directory: str) -> None:
        """Heads, fold heads, bank and constants under ``directory`` (any fsspec path)."""
        from pairsift.models.storage.tensor_files import join, write_json, write_tensors

        save_heads(self.heads, directory)
        for f, heads in enumerate(self.fold_heads):
            save_heads(heads, join(directory, f"fold_{f}"))
        tensors = {
            "image": torch.from_numpy(np.ascontiguousarray(self.bank_image)),
            "text": torch.from_numpy(np.ascontiguousarray(self.bank_text)),
        }
        for lang, arr in self.bank_text_tgt.items():
            tensors[f"text_tgt.{lang}"] = torch.from_numpy(np.ascontiguousarray(arr))
        write_tensors(join(directory, BANK_WEIGHTS), tensors)
        meta = {
            "tau": self.tau,
            "margin": self.margin,
            "temperature": self.temperature,
            "num_negatives": self.num_negatives,
            "languages": sorted(self.bank_text_tgt),
            "folds": len(self.fold_heads),
        }
        write_json(join(directory, SCORING_JSON), meta)

    @classmethod
    def load(cls, directory: str) -> ScoringState:
        from pairsift.models.storage.tensor_files import join, read_json, read_tensors

        meta = read_json(join(directory, SCORING_JSON))
        bank = read_tensors(join(directory, BANK_WEIGHTS))
        tgt = {k.split(".", 1)[1]: v.numpy() for k, v in bank.items() if k.startswith("text_tgt.")}
        return cls(
            heads=load_heads(directory),
            bank_image=bank["image"].numpy(),
            bank_text=bank["text"].numpy(),
            bank_text_tgt=tgt,
            tau=float(meta["tau"]),
            margin=float(meta["margin"]),
            temperature=float(meta["temperature"]),
            fold_heads=[
                load_heads(join(directory, f"fold_{f}"))
                for f in range(int(meta.get("folds", 0)))
            ],
        )


def fold_of_keys(keys: list[str], folds: int) -> np.ndarray:
    """A pair's cross-fitting fold from its key alone (stable across runs, shards, workers)."""
    if folds < 1:
        raise ValueError("folds must be at least 1")
    digests = (hashlib.blake2b(k.encode("utf-8"), digest_size=8).digest() for k in keys)
    return np.fromiter((int.from_bytes(d, "little") % folds for d in digests), dtype=np.int64)


AUDITED_SCORES = ("loss", "similarity", "consistency", "translation_consistency")


def target_view_columns(names: Iterable[str], lang: str) -> list[str]:
    """The score columns of the image–``lang`` view: they hold only where the pair has a
    ``lang`` caption (the score pass blanks them elsewhere)."""
    return [n for n in names if n.endswith(f"_{lang}") or n == "translation_consistency"]


def audited_columns(names: Iterable[str], langs: Iterable[str]) -> list[str]:
    """The score columns the audit keeps: the English view's loss and similarity, the
    neighbour and translation consistency, and every target-language view's scores (not the
    caption-swapped null's, which only feed the histograms)."""
    suffixes = tuple(f"_{lang}" for lang in langs)
    return [n for n in names if n in AUDITED_SCORES
            or (suffixes and n.endswith(suffixes) and not n.startswith("null_"))]


def loss_range(cfg: TrainConfig) -> tuple[float, float]:
    """Fixed range of ``loss`` = log(1 + CE), CE over K+1 columns of cosines in [−1, 1]."""
    return 0.0, math.log1p(math.log(cfg.num_negatives + 1) + 2.0 / cfg.temperature)


def build_scoring_state(
    heads: ProjectionHeads, data: PairEmbeddings, cfg: TrainConfig, seed: int
) -> ScoringState:
    """Draw K negative pairs (all views of the same pairs, so classes align across views)."""
    n = data.image.shape[0]
    if n < 2:
        raise ValueError("need at least 2 pairs to draw a negative bank")
    k = min(cfg.num_negatives, n)
    idx = np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))
    return ScoringState(
        heads=heads,
        bank_image=np.asarray(data.image[idx], dtype=np.float32),
        bank_text=np.asarray(data.text[idx], dtype=np.float32),
        bank_text_tgt={
            lang: np.asarray(v[idx], dtype=np.float32) for lang, v in sorted(data.text_tgt.items())
        },
        tau=cfg.evidence_tau,
        margin=cfg.margin,
        temperature=cfg.temperature,
    )


def _row_keys(arr: np.ndarray) -> list[bytes]:
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    return [row.tobytes() for row in arr]


def _same_mask(rows: np.ndarray, bank: np.ndarray) -> np.ndarray:
    """[B, K] True where a bank row is byte-identical to the input row."""
    index: dict[bytes, list[int]] = {}
    for j, key in enumerate(_row_keys(bank)):
        index.setdefault(key, []).append(j)
    mask = np.zeros((rows.shape[0], bank.shape[0]), dtype=bool)
    for i, key in enumerate(_row_keys(rows)):
        for j in index.get(key, ()):
            mask[i, j] = True
    return mask


def _view_scores(
    img: torch.Tensor,
    txt: torch.Tensor,
    bank_img: torch.Tensor,
    bank_txt: torch.Tensor,
    same_txt: torch.Tensor,
    same_img: torch.Tensor,
    state: ScoringState,
) -> tuple[dict[str, torch.Tensor], Opinion]:
    pos = (img * txt).sum(-1, keepdim=True)
    i2t = (img @ bank_txt.t()).masked_fill(same_txt, -1.0)
    t2i = (txt @ bank_img.t()).masked_fill(same_img, -1.0)
    row_i2t = torch.cat([pos, i2t], dim=1)
    row_t2i = torch.cat([pos, t2i], dim=1)
    t = state.temperature
    ce = (
        0.5 * (torch.logsumexp(row_i2t / t, dim=1) + torch.logsumexp(row_t2i / t, dim=1))
        - pos.squeeze(1) / t
    )
    hinge = (state.margin - pos + i2t).clamp_min(0).amax(dim=1) + (
        state.margin - pos + t2i
    ).clamp_min(0).amax(dim=1)
    op = opinion(row_i2t, state.tau)
    out = {"similarity": pos.squeeze(1), "loss": torch.log1p(ce), "ce": ce, "hinge": hinge}
    out.update(_opinion_scores(op))
    return out, op


def _opinion_scores(op: Opinion) -> dict[str, torch.Tensor]:
    neg_max = op.belief[:, 1:].amax(dim=1)
    return {
        "belief": op.belief[:, 0],
        "uncertainty": op.uncertainty,
        "alpha_self": op.alpha[:, 0],
        "alpha_total": op.strength,
        "match_prob": op.expected[:, 0],
        "belief_neg_max": neg_max,
        "top": (op.belief[:, 0] >= neg_max).to(op.belief.dtype),
    }


def _as_tensor(arr: np.ndarray, name: str) -> torch.Tensor:
    a = np.asarray(arr)
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-d [batch, dim], got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or inf")
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).double()


@torch.no_grad()
def score_batch(
    state: ScoringState,
    image: np.ndarray,
    text: np.ndarray,
    text_tgt: dict[str, np.ndarray] | None = None,
    text_src_ml: np.ndarray | None = None,
    folds: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Scores for each row; a row's scores do not depend on the other rows (see module doc).

    With ``folds`` (one fold id per row) and a state holding fold heads, each row is scored
    by its fold's heads (cross-fitting); otherwise by the main heads.
    """
    if folds is not None and state.fold_heads:
        return _score_by_fold(state, np.asarray(folds), image, text, text_tgt, text_src_ml)
    n = np.asarray(image).shape[0]
    if np.asarray(text).shape[0] != n:
        raise ValueError("image and text must have the same number of rows")
    parts: list[dict[str, np.ndarray]] = []
    for start in range(0, max(n, 1), _CHUNK):
        sl = slice(start, min(start + _CHUNK, n))
        tgt = {k: np.asarray(v)[sl] for k, v in (text_tgt or {}).items()}
        ml = None if text_src_ml is None else np.asarray(text_src_ml)[sl]
        parts.append(_score_chunk(state, np.asarray(image)[sl], np.asarray(text)[sl], tgt, ml))
    return {k: np.concatenate([p[k] for p in parts]).astype(np.float32) for k in parts[0]}


def _score_chunk(
    state: ScoringState,
    image: np.ndarray,
    text: np.ndarray,
    text_tgt: dict[str, np.ndarray],
    text_src_ml: np.ndarray | None,
) -> dict[str, np.ndarray]:
    heads = state.heads64()
    img = heads.image(_as_tensor(image, "image")).double()
    txt = heads.text(_as_tensor(text, "text")).double()
    bank_img = heads.image(torch.from_numpy(state.bank_image).double()).double()
    bank_txt = heads.text(torch.from_numpy(state.bank_text).double()).double()
    same_img = torch.from_numpy(_same_mask(image, state.bank_image))
    same_txt = torch.from_numpy(_same_mask(text, state.bank_text))
    out, op = _view_scores(img, txt, bank_img, bank_txt, same_txt, same_img, state)
    result = {k: v.numpy() for k, v in out.items()}
    combined = op
    consistency: list[np.ndarray] = []
    for lang in sorted(text_tgt):
        if lang not in state.bank_text_tgt:
            raise KeyError(
                f"scoring state has no {lang!r} bank; have {sorted(state.bank_text_tgt)}"
            )
        raw = text_tgt[lang]
        tgt = heads.text(_as_tensor(raw, f"text_tgt[{lang}]"), lang).double()
        bank_tgt = heads.text(torch.from_numpy(state.bank_text_tgt[lang]).double(), lang).double()
        same_tgt = torch.from_numpy(_same_mask(raw, state.bank_text_tgt[lang]))
        view, op_l = _view_scores(img, tgt, bank_img, bank_tgt, same_tgt, same_img, state)
        result.update({f"{k}_{lang}": v.numpy() for k, v in view.items()})
        if text_src_ml is not None:
            src = heads.text(_as_tensor(text_src_ml, "text_src_ml"), lang).double()
            cons = (src * tgt).sum(-1)
            result[f"translation_consistency_{lang}"] = cons.numpy()
            consistency.append(cons.numpy())
            op_l = discount(op_l, cons)  # NRF: trust the target view as far as it agrees
        combined = combine(combined, op_l)
    if text_tgt:
        result.update({f"{k}_dual": v.numpy() for k, v in _opinion_scores(combined).items()})
    if consistency:
        result["translation_consistency"] = np.mean(np.stack(consistency), axis=0)
    return result


def _score_by_fold(
    state: ScoringState,
    folds: np.ndarray,
    image: np.ndarray,
    text: np.ndarray,
    text_tgt: dict[str, np.ndarray] | None,
    text_src_ml: np.ndarray | None,
) -> dict[str, np.ndarray]:
    n = np.asarray(image).shape[0]
    if folds.shape != (n,):
        raise ValueError(f"folds must hold one fold id per row ({n}), got shape {folds.shape}")
    if n and (folds.min() < 0 or folds.max() >= len(state.fold_heads)):
        raise ValueError(f"fold ids must lie in [0, {len(state.fold_heads)})")
    out: dict[str, np.ndarray] = {}
    for f in range(len(state.fold_heads)):
        rows = np.flatnonzero(folds == f)
        if rows.size == 0:
            continue
        part = score_batch(
            state.for_fold(f),
            np.asarray(image)[rows],
            np.asarray(text)[rows],
            {k: np.asarray(v)[rows] for k, v in (text_tgt or {}).items()} or None,
            None if text_src_ml is None else np.asarray(text_src_ml)[rows],
        )
        for key, values in part.items():
            out.setdefault(key, np.zeros(n, dtype=values.dtype))[rows] = values
    return out
