"""An init image as the API checks it before anything is enqueued: base64 → bytes within the
deployment's limit → a PNG or JPEG that Pillow decodes whole. The worker decodes it again (into a
tensor); the API keeps no pixels, only the header (``protocol.init_images.InitImageHeader``) that
resolution checks against the model.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import warnings

from PIL import Image, UnidentifiedImageError

from protocol.init_images import INIT_IMAGE_FORMATS, InitImageError, InitImageHeader
from protocol.schema import ABSOLUTE_MAX_SIZE

# the routes whose body may carry an init image (their body limit is max_image_body_bytes): the
# OpenAI-shaped route takes every knob of the contract, init_image and strength included, and the
# edits route's image is a file part (raw bytes: smaller than the same image in base64)
INIT_IMAGE_PATHS = ("/v1/generations", "/v1/images/generations", "/v1/images/edits")
DATA_URL_PREFIXES = ("data:image/png;base64,", "data:image/jpeg;base64,")


def decode_base64_image(encoded: str, max_bytes: int) -> bytes:
    """The image bytes of a base64 string (a ``data:image/png;base64,`` URL is accepted too, and
    whitespace is ignored).

    Raises:
        InitImageError: 413 over ``max_bytes``; 422 when it is not base64.
    """
    encoded = "".join(encoded.split())  # line breaks, as `base64` and MIME wrap at 76 columns
    for prefix in DATA_URL_PREFIXES:
        if encoded.startswith(prefix):
            encoded = encoded[len(prefix) :]
            break
    if len(encoded) // 4 * 3 > max_bytes + 3:  # refused before decoding anything
        raise InitImageError(too_large(len(encoded) // 4 * 3, max_bytes), 413)
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as error:
        raise InitImageError(
            f"init_image is not valid base64 (standard alphabet, padded): {error}"
        ) from error
    return data


def read_init_image(data: bytes, max_bytes: int) -> InitImageHeader:
    """The header of an image's bytes, once Pillow has decoded it whole.

    Raises:
        InitImageError: 413 over ``max_bytes`` bytes or ABSOLUTE_MAX_SIZE pixels a side; 422 when it
            is empty, not PNG or JPEG, or does not decode.
    """
    if len(data) > max_bytes:
        raise InitImageError(too_large(len(data), max_bytes), 413)
    if not data:
        raise InitImageError("init_image is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=list(INIT_IMAGE_FORMATS)) as image:
                width, height = image.size
                if max(width, height) > ABSOLUTE_MAX_SIZE:
                    raise InitImageError(
                        f"init_image is {width}×{height}: larger than {ABSOLUTE_MAX_SIZE} pixels a side", 413
                    )
                image.load()  # a truncated or corrupt image fails here, in the API, not in a worker
                header = InitImageHeader(
                    format=str(image.format),
                    width=width,
                    height=height,
                    mode=image.mode,
                    sha256=hashlib.sha256(data).hexdigest(),
                    nbytes=len(data),
                )
    except InitImageError:
        raise
    except UnidentifiedImageError as error:
        raise InitImageError(f"init_image is not a {' or '.join(INIT_IMAGE_FORMATS)} image") from error
    except (
        OSError,
        SyntaxError,
        ValueError,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
    ) as error:
        raise InitImageError(f"init_image does not decode: {error}") from error
    return header


def too_large(nbytes: int, max_bytes: int) -> str:
    return f"init_image is {nbytes} bytes; this deployment takes at most {max_bytes} (max_init_image_bytes)"
