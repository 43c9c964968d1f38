"""From a final latent in [-1, 1] to a PNG."""

from __future__ import annotations

import base64
import io

import numpy as np
import torch
from PIL import Image


def to_uint8(latent: torch.Tensor) -> np.ndarray:
    """[1, C, H, W] in [-1, 1] -> uint8 [H, W] (C = 1) or [H, W, C], rounded to nearest."""
    pixels = ((latent[0].float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu().numpy()
    return pixels[0] if pixels.shape[0] == 1 else np.transpose(pixels, (1, 2, 0))


def encode_png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def png_base64(pixels: np.ndarray) -> str:
    return base64.b64encode(encode_png(pixels)).decode("ascii")
