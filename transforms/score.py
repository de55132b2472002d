"""Scoring stage pieces: per-pair scores of a shard from the frozen scoring state, in chunks.

The histograms the noise fit reads are :class:`pairsift.models.noise.fit.NoiseHistograms`,
summed over the shards by the score pass (pipeline/score_pass.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def score_in_chunks(
    state: Any,
    matrices: dict[str, np.ndarray],
    langs: list[str],
    chunk: int = 4096,
    keys: list[str] | None = None,
) -> dict[str, np.ndarray]:
    """Score every row, ``chunk`` rows at a time (bounded memory; results are row-wise).

    With ``keys`` and a cross-fitted state, each row goes to the fold heads its key picks.
    """
    from pairsift.models.training.scoring import fold_of_keys, score_batch

    n = len(matrices["image_emb"])
    parts: list[dict[str, np.ndarray]] = []
    for start in range(0, n, chunk):
        window = slice(start, start + chunk)
        text_tgt = {
            lang: matrices[f"text_emb_{lang}"][window]
            for lang in langs
            if f"text_emb_{lang}" in matrices
        }
        ml = matrices.get("text_emb_ml")
        parts.append(
            score_batch(
                state,
                matrices["image_emb"][window],
                matrices["text_emb"][window],
                text_tgt or None,
                ml[window] if ml is not None and text_tgt else None,
                folds=(
                    fold_of_keys(keys[window], len(state.fold_heads))
                    if keys is not None and state.fold_heads
                    else None
                ),
            )
        )
    if not parts:
        return {}
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
