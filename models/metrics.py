"""Retrieval and detection metrics for the benchmark protocol."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def recall_at_k(
    img_emb: np.ndarray,
    txt_emb: np.ndarray,
    ks: tuple[int, ...] = (1, 5, 10),
    txt_to_img: np.ndarray | None = None,
) -> dict[str, float]:
    """R@k in percent, both directions, and rSum (the sum of all of them).

    Without ``txt_to_img`` row i of each side is a pair. With it, ``img_emb`` holds unique
    images and caption j belongs to image ``txt_to_img[j]`` (several captions per image):
    image→text counts a hit when any of the image's captions is in the top k.
    """
    img, txt = _normalise(img_emb), _normalise(txt_emb)
    owner = np.arange(txt.shape[0]) if txt_to_img is None else np.asarray(txt_to_img)
    if txt_to_img is None and img.shape[0] != txt.shape[0]:
        raise ValueError("paired evaluation needs as many images as captions")
    if owner.shape[0] != txt.shape[0] or owner.max(initial=-1) >= img.shape[0]:
        raise ValueError("txt_to_img must map every caption to an image row")
    sims = img @ txt.T  # [n_img, n_txt]
    # image → text: rank of the best-ranked correct caption
    order = np.argsort(-sims, axis=1, kind="stable")
    correct = owner[order] == np.arange(img.shape[0])[:, None]
    i2t_rank = correct.argmax(axis=1)
    # text → image: rank of the caption's image
    own = sims[owner, np.arange(txt.shape[0])]
    t2i_rank = (sims > own[None, :]).sum(axis=0)
    out: dict[str, float] = {}
    for k in ks:
        out[f"i2t_r{k}"] = float(100.0 * np.mean(i2t_rank < k))
    for k in ks:
        out[f"t2i_r{k}"] = float(100.0 * np.mean(t2i_rank < k))
    out["rsum"] = float(sum(out.values()))
    return out


def detection_auc(is_noisy: np.ndarray, noise_score: np.ndarray) -> float:
    """ROC-AUC of a noise score (higher = more likely noisy) against the ground truth."""
    y = np.asarray(is_noisy).astype(bool)
    if y.all() or (~y).all():
        raise ValueError("detection AUC needs both noisy and clean pairs")
    return float(roc_auc_score(y, np.asarray(noise_score, dtype=np.float64)))


def kept_precision_recall(kept_mask: np.ndarray, is_noisy: np.ndarray) -> dict[str, float]:
    """Precision = share of kept pairs that are clean; recall = share of clean pairs kept."""
    kept = np.asarray(kept_mask).astype(bool)
    clean = ~np.asarray(is_noisy).astype(bool)
    n_kept, n_clean = int(kept.sum()), int(clean.sum())
    hit = int((kept & clean).sum())
    return {
        "precision": hit / n_kept if n_kept else 0.0,
        "recall": hit / n_clean if n_clean else 0.0,
        "kept": float(n_kept),
        "kept_fraction": n_kept / kept.size if kept.size else 0.0,
    }
