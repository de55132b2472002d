"""`pairsift train` (robust retrieval training) and `pairsift eval` (R@K on a clean test split).

Two training inputs: a pairsift run folder (its OUT/embeddings: fast, nothing re-embedded) or
curated WebDataset shards (the downstream-consumer path: streamed through a WebDataset loader
and embedded with the frozen towers).
"""

from __future__ import annotations

import argparse
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import numpy as np
from PIL import Image

from pairsift.models.config import PairsiftConfig
from pairsift.models.recipe import changes_from_default
from pairsift.models.storage.atomic import exists, list_files, read_json
from pairsift.pipeline.config_io import load_config
from pairsift.pipeline.io.readers import discover_shards, read_shard
from pairsift.pipeline.layout import RunLayout

log = logging.getLogger(__name__)

METHODS = ("pairsift", "ncr", "decl", "rcl", "contrastive")  # each a packaged recipe


def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser("train", help="train the noise-robust retrieval model")
    train.add_argument("--input", required=True, help="a pairsift run folder, or WebDataset shards")
    train.add_argument("--output", required=True, help="model folder (config.json + model.safetensors)")
    train.add_argument("--method", choices=METHODS, help="training recipe (default: the config's)")
    train.add_argument("--config", help="JSON/YAML config (default: the run's config, if any)")
    train.add_argument("--encoder", help="encoder spec for shard input (default: the config's)")
    train.add_argument("--epochs", type=int)
    train.add_argument("--seed", type=int)
    train.set_defaults(func=train_command)

    evaluate = subparsers.add_parser("eval", help="retrieval R@1/5/10 on a dataset's clean test split")
    evaluate.add_argument("--model", required=True)
    evaluate.add_argument("--data", required=True, help="dataset in an input layout (split/is_noisy columns)")
    evaluate.add_argument("--split", default="test")
    evaluate.add_argument("--lang", help="evaluate target-language captions (caption_<lang>) instead of English")
    evaluate.add_argument("--batch-size", type=int, default=64)
    evaluate.set_defaults(func=eval_command)


def _config_for(args: argparse.Namespace) -> PairsiftConfig:
    run_config = RunLayout(args.input).config
    if args.config:
        cfg = load_config(args.config)
    elif exists(run_config):
        cfg = PairsiftConfig.from_dict(read_json(run_config)["config"])
    else:
        cfg = PairsiftConfig()
    if args.method:  # what the method's recipe changes in training (NCR co-divides, ...)
        for key, value in changes_from_default(args.method).get("train", {}).items():
            setattr(cfg.train, key, value)
        cfg.train.loss = args.method
    if args.encoder:
        cfg.encoder.spec = args.encoder
    if args.epochs is not None:
        cfg.train.epochs = args.epochs
    if args.seed is not None:
        cfg.seed = args.seed
    return cfg


def embeddings_from_run(run_dir: str, cfg: PairsiftConfig):
    """The run's fit sample (its unique pairs, at most ``limits.max_fit_pairs``)."""
    from pairsift.models.storage.tables import read_table
    from pairsift.pipeline.fit import load_pairs
    from pairsift.pipeline.layout import RunLayout

    layout = RunLayout(run_dir)
    return load_pairs(layout, read_table(layout.fit_sample), cfg).data


def iter_webdataset(urls: list[str]) -> Iterator[tuple[Image.Image, str]]:
    import webdataset as wds

    dataset = wds.WebDataset(urls, shardshuffle=False).decode("pil").to_tuple("jpg;png;webp", "txt")
    yield from dataset


def embeddings_from_shards(path: str, cfg: PairsiftConfig):
    import torch

    from pairsift.models.encoders.factory import build_encoder
    from pairsift.models.pairdata import PairEmbeddings

    urls = [s.path for s in discover_shards(path) if s.kind == "tar"]
    if not urls:
        raise SystemExit(f"no .tar shards under {path}")
    encoder = build_encoder(cfg.encoder.spec, device="cpu", image_size=cfg.encoder.image_size)
    transform = encoder.image_transform()
    images: list[np.ndarray] = []
    texts: list[np.ndarray] = []
    batch: list[tuple[Image.Image, str]] = []

    def flush() -> None:
        with torch.no_grad():
            pixels = torch.stack([transform(im.convert("RGB")) for im, _ in batch])
            images.append(encoder.encode_images(pixels).numpy())
            texts.append(encoder.encode_texts([t for _, t in batch]).numpy())
        batch.clear()

    for pair in iter_webdataset(urls):
        batch.append(pair)
        if len(batch) == cfg.encoder.batch_size:
            flush()
    if batch:
        flush()
    return PairEmbeddings(image=np.concatenate(images), text=np.concatenate(texts))


def train_command(args: argparse.Namespace) -> int:
    from pairsift.models.training.trainer import train
    from pairsift.pipeline.fit import encoder_aligned, save_model

    cfg = _config_for(args)
    from_run = bool(list_files(RunLayout(args.input).embeddings, ".parquet"))
    data = embeddings_from_run(args.input, cfg) if from_run else embeddings_from_shards(args.input, cfg)
    aligned = encoder_aligned(cfg.encoder.spec, data.image.shape[1], data.text.shape[1])
    log.info("train: %d pairs from %s, method %s", len(data), "run embeddings" if from_run else "shards", cfg.train.loss)
    result = train(data, cfg, identity_init=aligned, progress=lambda e: log.info("train: %s", e))
    save_model(args.output, result.heads, cfg, sorted(data.text_tgt), {"pairs": len(data), "input": args.input})
    print(json.dumps({"model": args.output, "pairs": len(data), "method": cfg.train.loss}, indent=2))
    return 0


def clean_test_pairs(data: str, split: str, lang: str | None) -> list[tuple[bytes, str]]:
    """(image bytes, caption) of clean pairs in ``split``; all clean pairs if there are no splits."""
    pairs: list[tuple[bytes, str, Any]] = []
    for shard in discover_shards(data):
        for sample in read_shard(shard):
            if sample.error_status or sample.image_bytes is None:
                continue
            caption = sample.captions.get(lang) if lang else sample.caption
            if not caption or sample.meta.get("is_noisy"):
                continue
            pairs.append((sample.image_bytes, caption, sample.meta.get("split")))
    if any(s is not None for _, _, s in pairs):
        pairs = [p for p in pairs if p[2] == split]
    return [(image, caption) for image, caption, _ in pairs]


def eval_command(args: argparse.Namespace) -> int:
    from pairsift.models.metrics import recall_at_k
    from pairsift.models.training.retrieval import RetrievalModel

    model = RetrievalModel.load(args.model)
    pairs = clean_test_pairs(args.data, args.split, args.lang)
    if len(pairs) < 2:
        raise SystemExit(f"need at least 2 clean {args.split} pairs in {args.data}, found {len(pairs)}")
    img_parts, txt_parts = [], []
    for start in range(0, len(pairs), args.batch_size):
        chunk = pairs[start : start + args.batch_size]
        img_parts.append(model.encode_images([Image.open(io.BytesIO(b)) for b, _ in chunk]).numpy())
        txt_parts.append(model.encode_texts([c for _, c in chunk], lang=args.lang).numpy())
    metrics = recall_at_k(np.concatenate(img_parts), np.concatenate(txt_parts))
    metrics = {k: round(v, 2) for k, v in metrics.items()}
    print(json.dumps({"model": args.model, "data": args.data, "split": args.split,
                      "lang": args.lang, "pairs": len(pairs), **metrics}, indent=2))
    return 0
