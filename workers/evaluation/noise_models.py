"""The models of the sampling-noise sweep, as the sweep loads them, and the exact model's truth.

``load_sweep_model`` takes a model from the registry like the worker does; the exact-score model's
denoiser is wrapped in ``ClassRoutedDenoiser``, which gives the served outputs at a tenth of the
arithmetic for conditional rows. ``class_gaussians`` reads N(μ_c, Σ_c) off its mixture.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers.models.unets.unet_2d import UNet2DOutput

from workers.evaluation.noise_metrics import ClassGaussian
from workers.evaluation.noise_settings import MODEL_NAMES, ModelKind
from workers.models.gaussian_mixture import GaussianMixture, GaussianMixtureDenoiser
from workers.models.loading import LoadedModel, load_model
from workers.models.pixel_model import PixelModel
from workers.models.registry import lookup


class ClassRoutedDenoiser(torch.nn.Module):
    """The served ``GaussianMixtureDenoiser``, evaluated class by class.

    A conditional row's responsibilities are one-hot, so its posterior involves its own
    component only: it is computed by a one-component mixture of that class, ~10× less
    arithmetic than the served model's pass over every component (unrouted, these forwards
    were most of the sweep's cost). Null-class rows go to the served model. Same outputs to float64 round-off
    (``tests/workers/test_noise_sweep.py``); ``mixture`` is the served mixture.
    """

    def __init__(self, served: GaussianMixtureDenoiser) -> None:
        super().__init__()
        self.served = served
        self.mixture = mixture = served.mixture
        self.per_class = torch.nn.ModuleList(
            GaussianMixtureDenoiser(
                GaussianMixture(
                    means=mixture.means[c : c + 1],
                    components=mixture.components[c : c + 1],
                    variances=mixture.variances[c : c + 1],
                    floor=mixture.floor[c : c + 1],
                    log_weights=mixture.log_weights[c : c + 1],
                    alphas_cumprod=mixture.alphas_cumprod,
                    image_shape=mixture.image_shape,
                ),
                served.prediction_type,
            )
            for c in range(mixture.num_classes)
        )

    def forward(
        self, sample: torch.Tensor, timestep: torch.Tensor | float, class_labels: torch.Tensor | None = None
    ) -> Any:
        if class_labels is None:
            return self.served(sample, timestep, class_labels)
        labels = class_labels.reshape(-1).expand(sample.shape[0])
        t = torch.as_tensor(timestep).reshape(-1).expand(sample.shape[0])
        out = torch.empty_like(sample)
        for label in labels.unique().tolist():
            rows = labels == label
            if label < self.mixture.num_classes:
                zeros = torch.zeros_like(labels[rows])
                out[rows] = self.per_class[label](sample[rows], t[rows], zeros).sample
            else:
                out[rows] = self.served(sample[rows], t[rows], labels[rows]).sample
        return UNet2DOutput(sample=out)


def load_sweep_model(kind: ModelKind) -> LoadedModel:
    """The registry's model; the exact one with its denoiser routed by class (same numbers)."""
    model = load_model(lookup(MODEL_NAMES[kind]), torch.device("cpu"), torch.float32)
    if kind == "exact":
        assert isinstance(model, PixelModel)
        model.network = ClassRoutedDenoiser(model.network)  # type: ignore[arg-type]
    return model


def exact_mixture(model: LoadedModel) -> GaussianMixture:
    """The exact-score model's mixture (``model.network.mixture``)."""
    mixture = getattr(model.network, "mixture", None)
    if not isinstance(mixture, GaussianMixture):
        raise TypeError(f"model {model.info.name!r} is not an exact-score (Gaussian mixture) model")
    return mixture


def class_gaussians(model: LoadedModel, classes: tuple[int, ...]) -> dict[int, ClassGaussian]:
    """N(μ_c, Σ_c) of the exact model's classes, as numpy float64."""
    mixture = exact_mixture(model)
    return {
        c: ClassGaussian(
            mean=mixture.means[c].cpu().numpy(),
            components=mixture.components[c].cpu().numpy(),
            variances=mixture.variances[c].cpu().numpy(),
            floor=float(mixture.floor[c]),
        )
        for c in classes
    }
