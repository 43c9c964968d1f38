"""The API's reading of an init image: base64, the byte limit (413), the format, a whole decode."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from app.init_image import decode_base64_image, read_init_image
from protocol.init_images import InitImageError


def encoded(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


GREY = encoded(Image.fromarray(np.arange(28 * 28, dtype=np.uint8).reshape(28, 28)))


def test_a_grey_png_reads_with_its_header() -> None:
    header = read_init_image(decode_base64_image(base64.b64encode(GREY).decode(), 10_000), 10_000)
    assert (header.format, header.width, header.height, header.mode, header.nbytes) == (
        "PNG",
        28,
        28,
        "L",
        len(GREY),
    )
    data_url = "data:image/png;base64," + base64.b64encode(GREY).decode()
    assert decode_base64_image(data_url, 10_000) == GREY
    wrapped = base64.encodebytes(GREY).decode()  # 76 columns, as the base64 command writes it
    assert "\n" in wrapped and decode_base64_image(wrapped, 10_000) == GREY
    jpeg = read_init_image(encoded(Image.new("RGB", (16, 8)), "JPEG"), 10_000)
    assert (jpeg.format, jpeg.mode, jpeg.width, jpeg.height) == ("JPEG", "RGB", 16, 8)


@pytest.mark.parametrize(
    ("data", "status", "words"),
    [
        (b"", 422, "empty"),
        (b"not an image at all", 422, "PNG or JPEG"),
        (GREY[: len(GREY) // 2], 422, "does not decode"),
        (encoded(Image.new("L", (8, 8)), "GIF"), 422, "PNG or JPEG"),
        (b"x" * 20_000, 413, "max_init_image_bytes"),
        (encoded(Image.new("L", (4096, 1))), 413, "pixels a side"),
    ],
)
def test_bad_images_are_refused_naming_init_image(data: bytes, status: int, words: str) -> None:
    with pytest.raises(InitImageError) as info:
        read_init_image(data, 10_000)
    assert info.value.field == "init_image" and info.value.status_code == status
    assert words in info.value.message, info.value.message


def test_bad_base64_is_a_422_and_a_huge_one_a_413_before_decoding() -> None:
    with pytest.raises(InitImageError) as info:
        decode_base64_image("not base64!", 10_000)
    assert info.value.status_code == 422 and "base64" in info.value.message
    with pytest.raises(InitImageError) as info:
        decode_base64_image("A" * 100_000, 10_000)
    assert info.value.status_code == 413
