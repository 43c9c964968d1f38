"""A job's init image in the worker: its bytes (PNG or JPEG, as the API checked them) decoded
into pixels, the tensor the model encodes, and the two noise figures that ``strength: "auto"``
needs (σ̂ that chooses the start, and the response's own estimate that the result must not exceed).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
from PIL import Image

from protocol.init_images import INIT_IMAGE_FORMATS, MODE_FOR_CHANNELS
from workers.noise_estimate import noise_estimate
from workers.noise_level import init_noise_sigma


class InitImageUnusable(ValueError):
    """The stored init image is missing or not what its job's config says (a failed job)."""


@dataclass(frozen=True, eq=False)
class InitImage:
    pixels: np.ndarray  # uint8 [H, W] (grey) or [H, W, 3]

    @classmethod
    def decode(cls, data: bytes, channels: int, width: int, height: int) -> InitImage:
        """Raises InitImageUnusable unless ``data`` is an 8-bit image of this size and channels."""
        try:
            with Image.open(io.BytesIO(data), formats=list(INIT_IMAGE_FORMATS)) as image:
                image.load()
                mode, size = image.mode, image.size
                pixels = np.asarray(image)
        except (OSError, SyntaxError, ValueError) as error:
            raise InitImageUnusable(f"the init image does not decode: {error}") from error
        if MODE_FOR_CHANNELS.get(channels) != mode or size != (width, height):
            raise InitImageUnusable(
                f"the init image is {size[0]}×{size[1]} mode {mode}; the job needs {width}×{height} "
                f"with {channels} channel(s)"
            )
        return cls(pixels=pixels.astype(np.uint8))

    def tensor(self) -> torch.Tensor:
        """[1, C, H, W] float32 in [-1, 1] (``workers.images.to_uint8`` is the inverse)."""
        chw = self.pixels[None] if self.pixels.ndim == 2 else np.transpose(self.pixels, (2, 0, 1))
        return torch.from_numpy(chw.astype(np.float32) / 127.5 - 1.0).unsqueeze(0)

    @cached_property
    def noise_sigma(self) -> float:
        """σ̂ that chooses the start of ``strength: "auto"`` (``workers.noise_level``)."""
        return init_noise_sigma(self.pixels)

    @cached_property
    def noise_estimate(self) -> float:
        """The estimate every response reports (``workers.noise_estimate``), of this image."""
        return noise_estimate(self.pixels)
