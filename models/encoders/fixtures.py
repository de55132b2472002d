"""Tiny random-init towers saved the way real ones are published.

Tests and smoke benchmarks load them through the real factory (``hf:<dir>``,
``towers:...,text=hf:<dir>``), so the loading code is exercised without any model hub.
Weights come from a fixed seed: the same call writes the same model.
"""

from __future__ import annotations

from pathlib import Path

import torch

WORDS = (
    "a an the of on in with and red green blue yellow black white small large big "
    "circle square triangle star cat dog frog bird car house tree boat one two three "
    "photo picture drawing um uma o gato cão casa vermelho azul"
).split()
SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]")
MAX_LENGTH = 16


def save_tiny_tokenizer(path: str | Path) -> dict[str, int]:
    """A word-level fast tokenizer (no sentencepiece/BPE files needed). Returns its vocab."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate((*SPECIALS, *WORDS))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        model_max_length=MAX_LENGTH,
    )
    fast.save_pretrained(str(path))
    return vocab


def save_tiny_clip(path: str | Path, kind: str = "clip", image_size: int = 32, seed: int = 0) -> Path:
    """A tiny transformers CLIP (``kind="clip"``) or SigLIP (``"siglip"``) with processor files."""
    from transformers import (
        CLIPConfig,
        CLIPImageProcessor,
        CLIPModel,
        SiglipConfig,
        SiglipImageProcessor,
        SiglipModel,
    )

    path = Path(path)
    vocab = save_tiny_tokenizer(path)
    text = {
        "vocab_size": len(vocab),
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "max_position_embeddings": MAX_LENGTH,
        "pad_token_id": vocab["[PAD]"],
        "eos_token_id": vocab["[SEP]"],
        "bos_token_id": vocab["[CLS]"],
    }
    vision = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "image_size": image_size,
        "patch_size": 8,
    }
    torch.manual_seed(seed)
    if kind == "clip":
        model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=24))
        processor = CLIPImageProcessor(
            size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
        )
    elif kind == "siglip":
        model = SiglipModel(SiglipConfig(text_config=text, vision_config=vision))
        processor = SiglipImageProcessor(size={"height": image_size, "width": image_size})
    else:
        raise ValueError(f"kind must be clip or siglip, got {kind!r}")
    model.save_pretrained(str(path))
    processor.save_pretrained(str(path))
    return path


def save_tiny_text_model(path: str | Path, seed: int = 0) -> Path:
    """A tiny BERT text tower (mean-pooled like sentence-transformers models)."""
    from transformers import BertConfig, BertModel

    path = Path(path)
    vocab = save_tiny_tokenizer(path)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=24,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=48,
        max_position_embeddings=MAX_LENGTH,
        pad_token_id=vocab["[PAD]"],
    )
    BertModel(config).save_pretrained(str(path))
    return path
