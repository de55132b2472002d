"""Embed stage: decode → RunInference(frozen towers) → audit-ready rows with embeddings.

``EmbedPairs`` takes ``PairSample``s that passed caption validation and returns
``EmbedOutputs(embedded, failed)``:

* ``embedded``: ``audit_row(sample, ok, width=, height=)`` plus float16 1-D arrays
  ``image_emb``, ``text_emb`` and, with target languages, ``text_emb_ml`` (the English
  caption through the multilingual tower) and ``text_emb_<lang>`` for each target caption
  the pair has. A pair without a caption in some target language is still embedded; its
  ``text_emb_<lang>`` column is simply absent (later stages treat the view as missing).
* ``failed``: audit rows with status ``decode_error``, ``embed_error`` or
  ``nonfinite_embedding`` and a reason.

Decoding runs in its own DoFn, ahead of batching, so the model sees ready tensors; the model
loads once per worker inside RunInference (``KeyedModelHandler`` keyed by the partial audit
row, so image bytes are dropped before batching). A batch the model fails on is retried
pair by pair, so one poison pair costs one audit row, not a batch; whatever still escapes
reaches RunInference's dead-letter output and becomes ``embed_error`` rows.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import apache_beam as beam
import numpy as np
import torch
from apache_beam.ml.inference.base import KeyedModelHandler, ModelHandler, RunInference
from apache_beam.utils.windowed_value import WindowedValue

from pairsift.models.config import EncoderConfig
from pairsift.models.encoders.base import resize_target, stack_pixels
from pairsift.models.encoders.factory import (
    DEFAULT_MULTILINGUAL_SPEC,
    PairEncoder,
    TextEncoder,
    build_encoder,
    build_image_transform,
    build_text_encoder,
)
from pairsift.models.encoders.imaging import ImageDecodeError, decode_rgb
from pairsift.models.records import PairSample, Status, audit_row

LOG = logging.getLogger(__name__)
METRICS_NAMESPACE = "pairsift.embed"  # one counter per outcome (ok, decode_error, ...)
MODEL_METRICS_NAMESPACE = "pairsift.embed.model"
FAILED = "failed"


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


class EmbedOutputs(NamedTuple):
    embedded: beam.PCollection
    failed: beam.PCollection


def _count(outcome: str) -> None:
    beam.metrics.Metrics.counter(METRICS_NAMESPACE, outcome).inc()


# --- decode -----------------------------------------------------------------------------


class DecodePairs(beam.DoFn):
    """PairSample → (partial audit row, EmbedInput); undecodable images → tagged audit rows.

    With ``decode_threads > 0`` images decode in a thread pool (Pillow and torch release the
    GIL) while the bundle's thread runs the model: up to ``prefetch`` pairs are in flight and
    leave in arrival order, so batches stay deterministic. This keeps decoding off the
    accelerator's critical path; on a small CPU box inline decoding (0) is as fast.
    """

    def __init__(self, spec: str, image_size: int | None, max_image_pixels: int,
                 target_langs: Sequence[str], decode_threads: int = 0, prefetch: int = 0) -> None:
        self.spec = spec
        self.image_size = image_size
        self.max_image_pixels = max_image_pixels
        self.target_langs = tuple(target_langs)
        self.decode_threads = max(0, int(decode_threads))
        self.prefetch = prefetch or 4 * max(1, self.decode_threads)
        self.transform = None
        self.min_side: int | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._pending: deque = deque()

    def setup(self) -> None:
        self.transform = build_image_transform(self.spec, self.image_size)
        self.min_side = resize_target(self.transform)
        if self.decode_threads:
            self._pool = ThreadPoolExecutor(self.decode_threads, thread_name_prefix="decode")

    def teardown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _decode(self, sample: PairSample) -> Any:
        try:
            image, width, height = decode_rgb(sample.image_bytes, self.max_image_pixels, self.min_side)
            pixels = self.transform.to_uint8(image)  # normalised per batch by the model
        except ImageDecodeError as exc:  # counted by the emitting thread (metrics are per thread)
            return beam.pvalue.TaggedOutput(FAILED, audit_row(sample, Status.DECODE_ERROR, str(exc)))
        except Exception as exc:  # noqa: BLE001 - a transform's failure costs this pair only
            reason = f"cannot prepare pixels: {type(exc).__name__}: {exc}"[:1000]
            return beam.pvalue.TaggedOutput(FAILED, audit_row(sample, Status.DECODE_ERROR, reason))
        captions = {lang: sample.captions[lang] for lang in self.target_langs if sample.captions.get(lang)}
        row = audit_row(sample, Status.OK, width=width, height=height)
        return row, EmbedInput(pixels, sample.caption or "", captions)

    def start_bundle(self) -> None:
        self._pending = deque()

    def process(self, sample: PairSample, timestamp=beam.DoFn.TimestampParam,
                window=beam.DoFn.WindowParam) -> Iterator[Any]:
        if self._pool is None:
            yield _counted(self._decode(sample))
            return
        self._pending.append((self._pool.submit(self._decode, sample), timestamp, window))
        while len(self._pending) > self.prefetch:
            yield _counted(self._pending.popleft()[0].result())

    def finish_bundle(self) -> Iterator[WindowedValue]:
        while self._pending:
            future, timestamp, window = self._pending.popleft()
            out = _counted(future.result())
            if isinstance(out, beam.pvalue.TaggedOutput):
                yield beam.pvalue.TaggedOutput(out.tag, WindowedValue(out.value, timestamp, [window]))
            else:
                yield WindowedValue(out, timestamp, [window])


def _counted(out: Any) -> Any:
    if isinstance(out, beam.pvalue.TaggedOutput):
        _count(Status.DECODE_ERROR.value)
    return out


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
        return MODEL_METRICS_NAMESPACE  # RunInference's own latency/size metrics


# --- postprocess ------------------------------------------------------------------------


def finish_row(keyed: tuple[dict[str, Any], dict[str, Any]]) -> Iterator[Any]:
    """Embedding dict → final row (float16 vectors) or a tagged audit row."""
    row, result = keyed
    if "error" in result:
        _count(Status.EMBED_ERROR.value)
        yield beam.pvalue.TaggedOutput(FAILED, _failed(row, Status.EMBED_ERROR, result["error"]))
        return
    bad = sorted(name for name, vector in result.items() if not np.all(np.isfinite(vector)))
    if bad:
        _count(Status.NONFINITE_EMBEDDING.value)
        reason = f"non-finite values in {', '.join(bad)}"
        yield beam.pvalue.TaggedOutput(FAILED, _failed(row, Status.NONFINITE_EMBEDDING, reason))
        return
    _count(Status.OK.value)
    out = dict(row)
    for name, vector in result.items():
        out[name] = np.asarray(vector, dtype=np.float16)
    yield out


def dead_letter_rows(failure: tuple[Any, Any]) -> Iterator[dict[str, Any]]:
    """RunInference dead letter (batch of (row, input), exception info) → one row per pair."""
    batch, (exc_type, exc_repr, _traceback) = failure
    reason = f"inference failed: {exc_repr}"
    for row, _item in batch:
        _count(Status.EMBED_ERROR.value)
        yield _failed(row, Status.EMBED_ERROR, reason)


def _failed(row: dict[str, Any], status: Status, reason: str) -> dict[str, Any]:
    out = dict(row)
    out["status"], out["error"] = status.value, reason
    return out


# --- the stage --------------------------------------------------------------------------


class EmbedPairs(beam.PTransform):
    """PCollection[PairSample] → EmbedOutputs(embedded, failed) (see the module docstring)."""

    def __init__(self, encoder: EncoderConfig, target_langs: list[str], max_image_pixels: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.target_langs = list(target_langs)
        self.max_image_pixels = max_image_pixels

    def model_handler(self) -> KeyedModelHandler:
        return KeyedModelHandler(PairEncoderHandler(self.encoder, self.target_langs))

    def expand(self, samples: beam.PCollection) -> EmbedOutputs:
        decoded = samples | "Decode" >> beam.ParDo(
            DecodePairs(self.encoder.spec, self.encoder.image_size, self.max_image_pixels,
                        self.target_langs, self.encoder.decode_threads,
                        prefetch=2 * self.encoder.batch_size)
        ).with_outputs(FAILED, main="ok")
        inferred, dead = decoded.ok | "Embed" >> RunInference(
            self.model_handler()
        ).with_exception_handling()
        finished = inferred | "Finish" >> beam.FlatMap(finish_row).with_outputs(FAILED, main="ok")
        dead_rows = dead.failed_inferences | "DeadLetters" >> beam.FlatMap(dead_letter_rows)
        failed = (decoded[FAILED], finished[FAILED], dead_rows) | "Failed" >> beam.Flatten()
        return EmbedOutputs(embedded=finished.ok, failed=failed)
