"""What a training recipe is: one batch in, one scalar out, and (for a dividing recipe) how
it divides the pairs.

Kept apart from :mod:`pairsift.models.training.recipes` (the registry) so the baselines'
module (:mod:`pairsift.models.training.baselines`) can subclass :class:`TrainingRecipe`
while the registry imports the baselines: no import cycle.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import torch

from pairsift.models.config import PairsiftConfig
from pairsift.models.noise.division import Division, UncertaintyMemory
from pairsift.models.pairdata import PairEmbeddings
from pairsift.models.training.epoch_division import DividedPairs, NeighbourScores, divide_pairs
from pairsift.models.training.heads import ProjectionHeads


@dataclass
class Batch:
    """One batch of pair embeddings and, in the robust phase, its rows of the division."""

    img: torch.Tensor
    txt: torch.Tensor
    tgt: dict[str, torch.Tensor]
    div: dict[str, torch.Tensor] | None  # label masks, soft labels, uncertainty
    weight: torch.Tensor | None = None  # per-pair weights of the plain losses (train weights=)
    # the other co-teaching net's heads, read only (NCR's targets for its unlabelled pairs)
    peer: ProjectionHeads | None = None


class TrainingRecipe(ABC):
    """One training method: its per-batch loss and whether (and how) it divides the pairs.

    The trainer's loop (:func:`pairsift.models.training.trainer.train`) is the same for all
    of them; a recipe only answers what differs. A dividing recipe warms up on every pair,
    then re-divides all pairs once per epoch and trains on the division.
    """

    name = ""
    divides = False  # re-divide every epoch after the warm-up
    division_method: str | None = None  # None: the noise fit's (division.method)
    crossfits = False  # may divide with fold heads that never trained on the pair
    self_corrects = False  # keeps UCPM's per-pair uncertainty memory across epochs
    uses_consistency = False  # fuses the neighbour consistency into the division
    uses_translation_trust = False  # weighs target views by agreement with the source (NRF)
    accepts_weights = False  # per-pair weights (the final model's posteriors)

    def batch_loss(
        self, heads: ProjectionHeads, b: Batch, cfg: PairsiftConfig, epoch: int
    ) -> torch.Tensor:
        emb = embed_batch(heads, b)
        if self.divides and b.div is None:
            return self.warmup_loss(b, emb, cfg, epoch)
        return self.loss(b, emb, cfg, epoch)

    def warmup_loss(self, b: Batch, emb: dict, cfg: PairsiftConfig, epoch: int) -> torch.Tensor:
        """The batch's loss before the first division (a dividing recipe's warm-up); by
        default the recipe's own loss."""
        return self.loss(b, emb, cfg, epoch)

    @abstractmethod
    def loss(self, b: Batch, emb: dict, cfg: PairsiftConfig, epoch: int) -> torch.Tensor:
        """The batch's loss once the recipe trains on its division (or on every pair)."""

    def divide(
        self, heads: ProjectionHeads, data: PairEmbeddings, cfg: PairsiftConfig, seed: int,
        memory: UncertaintyMemory | None = None, neighbours: NeighbourScores | None = None,
    ) -> DividedPairs:
        """This epoch's division of every pair under ``heads``: by default the noise fit
        (or ``division_method``) on the pairs' scores against a fixed bank; a baseline whose
        paper divides otherwise overrides it."""
        return divide_pairs(heads, data, cfg, seed, memory, self.division_method, neighbours)

    def refine_division(self, div: Division, scores: dict[str, np.ndarray]) -> Division:
        """The division a net trains on, from the one :meth:`divide` gave."""
        return div


def embed_batch(heads: ProjectionHeads, b: Batch) -> dict:
    """The batch through ``heads``: image, English and target-language embeddings."""
    return {
        "img": heads.image(b.img),
        "txt": heads.text(b.txt),
        "tgt": {lang: heads.text(x, lang) for lang, x in b.tgt.items()},
    }


def text_views(emb: dict) -> list[torch.Tensor]:
    """The caption embeddings a loss sums over: English first, then each target language."""
    return [emb["txt"], *emb["tgt"].values()]
