"""Embed stage: decode → frozen towers → audit-ready rows with embeddings, shard by shard.

:class:`ShardEmbedder` takes the ``PairSample``s of one shard that passed caption validation,
in input order, and yields one row per pair:

* embedded: ``audit_row(sample, ok, width=, height=)`` plus float16 1-D arrays
  ``image_emb``, ``text_emb`` and, with target languages, ``text_emb_ml`` (the English
  caption through the multilingual tower) and ``text_emb_<lang>`` for each target caption
  the pair has. A pair without a caption in some target language is still embedded; its
  ``text_emb_<lang>`` column is simply absent (later stages treat the view as missing).
* failed: audit rows with status ``decode_error``, ``embed_error`` or
  ``nonfinite_embedding`` and a reason.

Batches are formed from the shard's own pairs, in input order, so a pair's vectors do not
depend on how a runner splits work (bundles, worker count, dynamic splitting). The towers load
once per worker through :class:`PairEncoderHandler` (a RunInference ``ModelHandler``); on a
GPU they load once per machine and every SDK process on it calls the one copy
(:func:`load_towers`). A batch the model fails on is retried pair by pair, so one poison
pair costs one audit row, not a batch.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import apache_beam as beam
import numpy as np
import torch
from apache_beam.ml.inference.base import ModelHandler

from pairsift.models.config import EncoderConfig
from pairsift.models.encoders.base import resize_target, resolve_device, stack_pixels
from pairsift.models.encoders.factory import (
    DEFAULT_MULTILINGUAL_SPEC,
    PairEncoder,
    TextEncoder,
    build_encoder,
    build_image_transform,
    build_text_encoder,
)
from pairsift.models.encoders.imaging import ImageDecodeError, decode_pixels
from pairsift.models.records import PairSample, Status, audit_row

LOG = logging.getLogger(__name__)
METRICS_NAMESPACE = "pairsift.embed"  # one counter per outcome (ok, decode_error, ...)


@dataclass
class EmbedInput:
    """What the model needs of one pair: resized uint8 CHW pixels and the captions."""

    pixels: torch.Tensor
    caption: str
    captions: dict[str, str] = field(default_factory=dict)


@dataclass
class EmbedModels:
    pair: PairEncoder
    multilingual: TextEncoder | None = None


def _count(outcome: str) -> None:
    beam.metrics.Metrics.counter(METRICS_NAMESPACE, outcome).inc()


# --- decode -----------------------------------------------------------------------------


class PixelDecoder:
    """PairSample → (partial audit row, EmbedInput), or a ``decode_error`` audit row."""

    def __init__(self, spec: str, image_size: int | None, max_image_pixels: int,
                 target_langs: Sequence[str]) -> None:
        self.transform = build_image_transform(spec, image_size)
        self.min_side = resize_target(self.transform)
        self.max_image_pixels = max_image_pixels
        self.target_langs = tuple(target_langs)

    def __call__(self, sample: PairSample) -> tuple[dict[str, Any], EmbedInput] | dict[str, Any]:
        try:
            pixels, width, height = decode_pixels(sample.image_bytes, self.transform,
                                                  self.max_image_pixels, self.min_side)
        except ImageDecodeError as exc:
            return audit_row(sample, Status.DECODE_ERROR, str(exc))
        except Exception as exc:  # noqa: BLE001 - a transform's failure costs this pair only
            reason = f"cannot prepare pixels: {type(exc).__name__}: {exc}"[:1000]
            return audit_row(sample, Status.DECODE_ERROR, reason)
        captions = {lang: sample.captions[lang] for lang in self.target_langs if sample.captions.get(lang)}
        row = audit_row(sample, Status.OK, width=width, height=height)
        return row, EmbedInput(pixels, sample.caption or "", captions)


# --- model ------------------------------------------------------------------------------


class PairEncoderHandler(ModelHandler[EmbedInput, dict[str, Any], EmbedModels]):
    """Loads the towers once per worker; embeds a batch of pairs.

    Returns one dict per pair: float32 arrays by column, or ``{"error": reason}`` for a pair
    the model failed on when retried alone.
    """

    def __init__(self, config: EncoderConfig, target_langs: Sequence[str] = ()) -> None:
        super().__init__(min_batch_size=config.batch_size, max_batch_size=config.batch_size)
        self.config = config
        self.target_langs = tuple(target_langs)
        self.multilingual_spec = (
            (config.multilingual_spec or DEFAULT_MULTILINGUAL_SPEC) if self.target_langs else None
        )

    def load_model(self) -> EmbedModels:
        pair = build_encoder(
            self.config.spec, self.config.device, self.config.image_size, self.config.precision
        )
        multilingual = None
        if self.multilingual_spec:
            multilingual = build_text_encoder(
                self.multilingual_spec, self.config.device, self.config.precision
            )
        LOG.info("embed: loaded %r (multilingual %s)", pair, self.multilingual_spec)
        return EmbedModels(pair, multilingual)

    def run_inference(
        self,
        batch: Sequence[EmbedInput],
        model: EmbedModels,
        inference_args: dict[str, Any] | None = None,
    ) -> Iterable[dict[str, Any]]:
        try:
            return self._embed(batch, model)
        except Exception as exc:  # retry alone: one poison pair must not fail its batch
            if len(batch) == 1:
                return [{"error": f"{type(exc).__name__}: {exc}"}]
            LOG.warning("embed: batch of %d failed (%s); retrying pair by pair", len(batch), exc)
            return [out for item in batch for out in self.run_inference([item], model)]

    def _embed(self, batch: Sequence[EmbedInput], model: EmbedModels) -> list[dict[str, Any]]:
        pixels = stack_pixels([item.pixels for item in batch])
        english = [item.caption for item in batch]
        columns = {
            "image_emb": model.pair.encode_images(pixels).numpy(),
            "text_emb": model.pair.encode_texts(english).numpy(),
        }
        rows: list[dict[str, Any]] = [
            {name: values[i] for name, values in columns.items()} for i in range(len(batch))
        ]
        if model.multilingual is not None:
            for i, vector in enumerate(model.multilingual.encode_texts(english).numpy()):
                rows[i]["text_emb_ml"] = vector
            for lang in self.target_langs:
                where = [i for i, item in enumerate(batch) if lang in item.captions]
                if not where:
                    continue
                texts = [batch[i].captions[lang] for i in where]
                for i, vector in zip(where, model.multilingual.encode_texts(texts).numpy(), strict=True):
                    rows[i][f"text_emb_{lang}"] = vector
        return rows

    def get_num_bytes(self, batch: Sequence[EmbedInput]) -> int:
        return sum(item.pixels.numel() * item.pixels.element_size() for item in batch)

    def get_metrics_namespace(self) -> str:
        return "pairsift.embed.model"  # RunInference's own metrics, where a user runs it


# --- postprocess


def finished_row(row: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    """A partial audit row and the model's output → the pair's row: float16 vectors, or an
    ``embed_error`` / ``nonfinite_embedding`` audit row with the reason."""
    if "error" in result:
        return _failed(row, Status.EMBED_ERROR, result["error"])
    bad = sorted(name for name, vector in result.items() if not np.all(np.isfinite(vector)))
    if bad:
        return _failed(row, Status.NONFINITE_EMBEDDING, f"non-finite values in {', '.join(bad)}")
    out = dict(row)
    for name, vector in result.items():
        out[name] = np.asarray(vector, dtype=np.float16)
    return out


def _failed(row: dict[str, Any], status: Status, reason: str) -> dict[str, Any]:
    out = dict(row)
    out["status"], out["error"] = status.value, reason
    return out


# --- the towers, once per worker or once per machine -------------------------------------


class TowerServer:
    """The loaded towers behind one method, so that SDK processes can share one copy through
    a proxy (a proxy forwards method calls, not attribute access)."""

    def __init__(self, handler: PairEncoderHandler) -> None:
        self.handler = handler
        self.models = handler.load_model()

    def embed(self, batch: Sequence[EmbedInput]) -> list[dict[str, Any]]:
        return list(self.handler.run_inference(batch, self.models))


def load_towers(handler: PairEncoderHandler, share_across_processes: bool) -> TowerServer:
    """The towers for this worker. Shared: one copy per machine, served from its own process
    (Beam's ``multi_process_shared``), as a GPU holds one copy however many SDK processes
    the VM runs; otherwise each process loads its own (CPU workers: no proxy hop)."""
    if not share_across_processes:
        return TowerServer(handler)
    from apache_beam.utils.multi_process_shared import MultiProcessShared

    cfg = handler.config
    tag = "pairsift-towers:" + "|".join(
        str(v) for v in (cfg.spec, handler.multilingual_spec, cfg.device, cfg.precision,
                         cfg.image_size, ",".join(handler.target_langs)))
    return MultiProcessShared(lambda: TowerServer(handler), tag=tag, always_proxy=True).acquire()


def shares_towers(config: EncoderConfig) -> bool:
    """Towers on a GPU are shared by the machine's processes; on a CPU each loads its own."""
    return resolve_device(config.device).startswith("cuda")


# --- one shard -----------------------------------------------------------------------------


class ShardEmbedder:
    """Embeds a shard's validated pairs in input order, in batches of ``batch_size`` formed
    from those pairs alone (see the module docstring). ``outcomes`` counts each row's status.

    With ``decode_threads > 0`` a batch's images decode in a thread pool (Pillow and torch
    release the GIL); the pool keeps input order, so the batches are the same either way.
    """

    def __init__(self, config: EncoderConfig, target_langs: Sequence[str], max_image_pixels: int) -> None:
        self.config = config
        self.target_langs = list(target_langs)
        self.max_image_pixels = max_image_pixels
        self.decoder: PixelDecoder | None = None
        self.towers: TowerServer | None = None
        self._pool: ThreadPoolExecutor | None = None
        self.outcomes: dict[str, int] = {}

    def setup(self, share_across_processes: bool | None = None) -> None:
        cfg = self.config
        self.decoder = PixelDecoder(cfg.spec, cfg.image_size, self.max_image_pixels, self.target_langs)
        share = shares_towers(cfg) if share_across_processes is None else share_across_processes
        self.towers = load_towers(PairEncoderHandler(cfg, self.target_langs), share)
        if cfg.decode_threads > 0:
            self._pool = ThreadPoolExecutor(cfg.decode_threads, thread_name_prefix="decode")

    def teardown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def embed(self, samples: Iterable[PairSample]) -> Iterator[dict[str, Any]]:
        """One row per sample (embedded or failed), batch by batch in input order."""
        batch: list[PairSample] = []
        for sample in samples:
            batch.append(sample)
            if len(batch) == self.config.batch_size:
                yield from self._embed_batch(batch)
                batch = []
        if batch:
            yield from self._embed_batch(batch)

    def _embed_batch(self, samples: list[PairSample]) -> Iterator[dict[str, Any]]:
        assert self.decoder is not None and self.towers is not None, "call setup() first"
        decoded = list(self._pool.map(self.decoder, samples) if self._pool else map(self.decoder, samples))
        ready = [d for d in decoded if isinstance(d, tuple)]
        for failed in (d for d in decoded if not isinstance(d, tuple)):
            yield self._counted(failed)
        if not ready:
            return
        try:
            results = self.towers.embed([item for _row, item in ready])
        except Exception as exc:  # noqa: BLE001 - the towers' own retry could not save it
            reason = f"inference failed: {type(exc).__name__}: {exc}"[:1000]
            results = [{"error": reason}] * len(ready)
        for (row, _item), result in zip(ready, results, strict=True):
            yield self._counted(finished_row(row, result))

    def _counted(self, row: dict[str, Any]) -> dict[str, Any]:
        self.outcomes[row["status"]] = self.outcomes.get(row["status"], 0) + 1
        _count(row["status"])
        return row
