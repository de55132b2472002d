"""Right pixels from untrusted bytes: high bit depths scaled, EXIF orientation applied."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from pairsift.models.encoders.imaging import decode_rgb


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def test_a_16_bit_png_is_scaled_not_clipped() -> None:
    ramp = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (8, 1))
    data = _png(Image.fromarray(ramp))  # saved as a 16-bit greyscale PNG
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    image, width, height = decode_rgb(data, 10**8)
    pixels = np.asarray(image)
    assert (width, height) == (64, 8) and image.mode == "RGB"
    np.testing.assert_allclose(pixels[0, :, 0], np.round(ramp[0] / 257.0), atol=1)
    assert pixels.mean() < 140  # clipping made it almost white (mean ~250)


def test_float_and_32_bit_images_keep_their_range() -> None:
    tiff = io.BytesIO()
    Image.fromarray(np.full((4, 4), 100, dtype=np.int32)).save(tiff, format="TIFF")
    assert Image.open(io.BytesIO(tiff.getvalue())).mode == "I"  # 32-bit, an 8-bit range
    assert np.asarray(decode_rgb(tiff.getvalue(), 10**8)[0])[0, 0, 0] == 100
    out = io.BytesIO()
    Image.fromarray(np.full((4, 4), 0.5, dtype=np.float32)).save(out, format="TIFF")
    assert abs(int(np.asarray(decode_rgb(out.getvalue(), 10**8)[0])[0, 0, 0]) - 128) <= 1


def test_exif_orientation_is_applied_and_the_file_size_reported() -> None:
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    image.paste((0, 0, 255), (0, 0, 10, 20))  # blue on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # the camera was turned: rotate 90° clockwise to view
    out = io.BytesIO()
    image.save(out, format="JPEG", exif=exif.tobytes(), quality=95)
    decoded, width, height = decode_rgb(out.getvalue(), 10**8)
    assert decoded.size == (20, 40)  # upright
    assert (width, height) == (40, 20)  # the audit keeps the file's own size
    top = np.asarray(decoded)[:5].mean(axis=(0, 1))
    assert top[2] > 150 and top[0] < 100  # the blue stripe is now on top


def _jpeg(image: Image.Image, **save: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=92, **save)
    return out.getvalue()


def _smooth(width: int, height: int) -> Image.Image:
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), (x + y) % 256], -1)
    return Image.fromarray(rgb.astype(np.uint8))


def test_the_fast_jpeg_path_gives_pillows_pixels_within_a_few_levels() -> None:
    import pytest

    from pairsift.models.encoders.base import make_transform
    from pairsift.models.encoders.imaging import ImageDecodeError, decode_jpeg_fast, decode_pixels

    transform = make_transform(32, (0.5,) * 3, (0.5,) * 3)
    for width, height in ((64, 64), (300, 200)):
        data = _jpeg(_smooth(width, height))
        assert decode_jpeg_fast(data, 10**8, 32) is not None
        fast, w, h = decode_pixels(data, transform, 10**8, 32)
        image, _, _ = decode_rgb(data, 10**8, 32)
        slow = transform.to_uint8(image)
        assert (w, h) == (width, height) and fast.shape == slow.shape == (3, 32, 32)
        assert int((fast.int() - slow.int()).abs().max()) <= 8
        assert fast.permute(1, 2, 0).is_contiguous()  # batched as one copy
    with pytest.raises(ImageDecodeError, match="over the limit"):
        decode_jpeg_fast(_jpeg(_smooth(64, 64)), 100, 32)
    # what the fast path leaves to Pillow: EXIF (orientation), CMYK, other formats
    exif = Image.Exif()
    exif[0x0112] = 6
    assert decode_jpeg_fast(_jpeg(_smooth(40, 20), exif=exif), 10**8, 16) is None
    assert decode_jpeg_fast(_jpeg(_smooth(40, 20).convert("CMYK")), 10**8, 16) is None
    assert decode_jpeg_fast(_png(_smooth(40, 20)), 10**8, 16) is None
