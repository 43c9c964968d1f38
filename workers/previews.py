"""A small PNG of an image's predicted x̂₀, for live progress: what the reverse process currently
believes the image is. Latent models decode it with their VAE first (one image, every few
seconds at most, so the cost stays off the step loop's budget)."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from workers.images import encode_png, to_uint8
from workers.models.loaded_model import LoadedModel

PREVIEW_MAX_SIDE = 64


@torch.inference_mode()
def preview_png(model: LoadedModel, x0: torch.Tensor) -> bytes:
    """x̂₀ of one image ([1, C, h, w] in the model's latent space) as a PNG of at most
    ``PREVIEW_MAX_SIDE`` pixels a side."""
    image = Image.fromarray(to_uint8(model.decode(x0.float().clamp(-20, 20))))
    image.thumbnail((PREVIEW_MAX_SIDE, PREVIEW_MAX_SIDE))
    return encode_png(np.asarray(image))
