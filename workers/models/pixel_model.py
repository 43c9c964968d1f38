"""Models that denoise pixels directly: a ``UNet2DModel`` (the project's digit models, or a
``DDPMPipeline`` folder: any channel count, unconditional or class-conditional) or the
closed-form Gaussian mixture, which is called like one: ``network(x_t, t, class_labels=...).sample``.

A class-conditional model offers guidance only when it has a null class (a label trained as
"no class": the project's models record it in ``denoise_model.json``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from protocol.schema import ModelInfo, ResolvedConfig
from workers.host_upload import upload
from workers.models.gaussian_mixture import GaussianMixture, GaussianMixtureDenoiser
from workers.models.loaded_model import Condition, LoadedModel


class PixelModel(LoadedModel):
    def __init__(
        self,
        info: ModelInfo,
        scheduler_config: dict[str, Any],
        network: torch.nn.Module,
        null_class: int | None,
        device: torch.device,
        dtype: torch.dtype,
    ) -> None:
        super().__init__(info, scheduler_config, device, dtype)
        self._network = network
        self.null_class = null_class
        self.class_conditional = info.conditioning == "class_label"

    @property
    def network(self) -> torch.nn.Module:
        return self._network

    @network.setter
    def network(self, network: torch.nn.Module) -> None:
        self._network = network  # the evaluation wraps the exact model's network

    @property
    def mixture(self) -> GaussianMixture:
        """The closed-form model behind ``network`` (``architecture: gaussian_mixture``), typed."""
        if not isinstance(self._network, GaussianMixtureDenoiser):
            raise TypeError(
                f"model {self.info.name!r} is a {type(self._network).__name__}, not a Gaussian mixture"
            )
        return self._network.mixture

    def latent_shape(self, width: int, height: int) -> tuple[int, int, int]:
        return (self.info.channels, height, width)

    def conditions(self, config: ResolvedConfig) -> tuple[Condition, Condition]:
        if not self.class_conditional:
            return None, None
        label = config.class_label if config.class_label is not None else self.null_class
        return label, self.null_class

    def unconditional_condition(self) -> Condition:
        return self.null_class if self.class_conditional else None

    def warm_up_condition(self) -> Condition:
        if self.class_conditional and self.null_class is None:
            return 0  # a folder without a null class: any class will do
        return self.unconditional_condition()

    def forward(
        self, latents: torch.Tensor, timesteps: torch.Tensor, conditions: Sequence[Condition]
    ) -> torch.Tensor:
        if not self.class_conditional:
            return self._network(latents, timesteps).sample  # type: ignore[no-any-return]
        labels = upload(torch.tensor(list(conditions)), self.device)
        return self._network(latents, timesteps, class_labels=labels).sample  # type: ignore[no-any-return]
