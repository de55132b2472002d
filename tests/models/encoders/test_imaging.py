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
