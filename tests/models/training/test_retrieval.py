"""The retrieval model: saved as config.json + model.safetensors, loaded with one call."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from pairsift.models.encoders.factory import build_encoder
from pairsift.models.training.heads import ProjectionHeads
from pairsift.models.training.retrieval import RetrievalConfig, RetrievalModel, save_retrieval_model

SPEC = "open_clip:pairsift-tiny"


def test_save_and_load_in_one_call(tmp_path: Path) -> None:
    encoder = build_encoder(SPEC)
    torch.manual_seed(0)
    heads = ProjectionHeads(encoder.image_dim, encoder.text_dim, 16)
    save_retrieval_model(str(tmp_path), heads, RetrievalConfig(encoder_spec=SPEC, heads=dict(heads.config)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]

    model = RetrievalModel.load(str(tmp_path))
    images = [Image.new("RGB", (40, 30), (200, 20, 20)), Image.new("RGB", (30, 40), (20, 20, 200))]
    img = model.encode_images(images)
    txt = model.encode_texts(["a red square", "a blue square"])
    assert img.shape == (2, 16) and txt.shape == (2, 16)
    assert torch.allclose(img.norm(dim=-1), torch.ones(2), atol=1e-5)
    with torch.no_grad():  # same vectors as the heads applied to the same towers
        expected = heads.text(encoder.encode_texts(["a red square", "a blue square"]))
    assert torch.allclose(txt, expected, atol=1e-5)
