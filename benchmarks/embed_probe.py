"""`pairsift bench embed-probe`: how much retrieval signal the frozen towers carry.

Embeds every pair of a dataset, trains linear projection heads (``models/training/heads.py``) with a
short symmetric InfoNCE on the train split's frozen embeddings, and reports image→text and
text→image R@1/R@10 on the test split against chance (k/N). ``--random-init`` re-initialises
every tower weight first: the floor that tells real features from architecture alone.
Splits come from the samples' ``split`` field (the dataset builders write it), else from a
hash of the key (80/20), so they never depend on read order.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from typing import Any

import numpy as np


def split_of(sample) -> str:
    split = sample.meta.get("split")
    if split in ("train", "test"):
        return split
    digest = hashlib.sha256(f"{sample.source_shard}/{sample.key}".encode()).digest()
    return "test" if digest[0] < 256 * 0.2 else "train"


def randomize(encoder, seed: int) -> None:
    """Re-draw every parameter of every tower (frozen or not) from its layer's init."""
    import torch

    torch.manual_seed(seed)
    holders = [encoder, getattr(encoder, "text", None)]
    for holder in holders:
        for value in vars(holder or object()).values():
            if isinstance(value, torch.nn.Module):
                for module in value.modules():
                    if hasattr(module, "reset_parameters"):
                        module.reset_parameters()


def embed_all(samples, encoder, batch_size: int, max_pixels: int):
    from pairsift.models.encoders.base import resize_target, stack_pixels
    from pairsift.models.encoders.imaging import ImageDecodeError, decode_pixels

    transform = encoder.image_transform()
    min_side = resize_target(transform)
    images, texts, kept = [], [], []
    for start in range(0, len(samples), batch_size):
        chunk, pixels = [], []
        for sample in samples[start : start + batch_size]:
            try:
                decoded, _, _ = decode_pixels(sample.image_bytes, transform, max_pixels, min_side)
            except ImageDecodeError:
                continue
            pixels.append(decoded)
            chunk.append(sample)
        if not chunk:
            continue

        images.append(encoder.encode_images(stack_pixels(pixels)).numpy())
        texts.append(encoder.encode_texts([s.caption for s in chunk]).numpy())
        kept.extend(chunk)
    return np.concatenate(images), np.concatenate(texts), kept


def train_heads(img: np.ndarray, txt: np.ndarray, dim: int, epochs: int, seed: int,
                identity: bool, temperature: float = 0.05, batch_size: int = 128):
    import torch

    from pairsift.models.training.heads import ProjectionHeads
    from pairsift.models.training.losses import info_nce

    torch.manual_seed(seed)
    heads = ProjectionHeads(img.shape[1], txt.shape[1], dim if not identity else img.shape[1],
                            identity=identity)
    opt = torch.optim.AdamW(heads.parameters(), lr=1e-3, weight_decay=1e-2)
    x_img, x_txt = torch.from_numpy(img).float(), torch.from_numpy(txt).float()
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(x_img), generator=gen)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            loss = info_nce(heads.image(x_img[idx]), heads.text(x_txt[idx]), temperature).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return heads.eval()


def probe(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from pairsift.benchmarks.embed import load_samples
    from pairsift.models.encoders.factory import build_encoder
    from pairsift.models.metrics import recall_at_k

    torch.manual_seed(args.seed)
    data = load_samples(args.data, args.limit or None)
    encoder = build_encoder(args.encoder, args.device, args.image_size)
    if args.random_init:
        randomize(encoder, args.seed)
    start = time.perf_counter()
    img, txt, kept = embed_all(data.samples, encoder, args.batch_size, args.max_image_pixels)
    embed_s = time.perf_counter() - start
    is_test = np.array([split_of(s) == "test" for s in kept])
    heads = train_heads(img[~is_test], txt[~is_test], args.dim, args.epochs, args.seed,
                        identity=False)
    with torch.no_grad():
        h_img = heads.image(torch.from_numpy(img[is_test])).numpy()
        h_txt = heads.text(torch.from_numpy(txt[is_test])).numpy()
    n_test = int(is_test.sum())
    report: dict[str, Any] = {
        "encoder": args.encoder, "random_init": bool(args.random_init),
        "image_size": args.image_size, "pairs": len(kept), "train": int((~is_test).sum()),
        "test": n_test, "embed_s": round(embed_s, 1), "head_dim": args.dim, "epochs": args.epochs,
        "chance_r1": round(100.0 / n_test, 2), "chance_r10": round(1000.0 / n_test, 2),
        "heads": {k: round(v, 2) for k, v in recall_at_k(h_img, h_txt, (1, 10)).items()},
    }
    if encoder.aligned:  # the towers' own space, no heads
        raw = recall_at_k(img[is_test], txt[is_test], (1, 10))
        report["zero_shot"] = {k: round(v, 2) for k, v in raw.items()}
    return report


def probe_command(args: argparse.Namespace) -> int:
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    report = probe(args)
    heads = report["heads"]
    print(
        f"embed probe: {report['encoder']!r}{' (random init)' if report['random_init'] else ''}, "
        f"{report['train']} train / {report['test']} test pairs\n"
        f"  image→text R@1 {heads['i2t_r1']:6.2f}%  R@10 {heads['i2t_r10']:6.2f}%   "
        f"(chance {report['chance_r1']}% / {report['chance_r10']}%)\n"
        f"  text→image R@1 {heads['t2i_r1']:6.2f}%  R@10 {heads['t2i_r10']:6.2f}%"
    )
    print(json.dumps(report, sort_keys=True))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "embed-probe", help="retrieval R@k of linear heads trained on the frozen towers"
    )
    parser.add_argument("--data", required=True, help="dataset (e.g. built by `pairsift data tuxpaint`)")
    parser.add_argument("--encoder", default="default")
    parser.add_argument("--random-init", action="store_true", help="re-initialise the towers")
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dim", type=int, default=256, help="head output dimension")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=0, help="pairs (0 = all)")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--max-image-pixels", type=int, default=64_000_000)
    parser.set_defaults(func=probe_command)
