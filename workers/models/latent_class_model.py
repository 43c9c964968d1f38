"""Class-conditional latent transformers in the DiT layout (Peebles & Xie 2023): a
``DiTTransformer2DModel`` denoises VAE latents conditioned on a class label through adaptive
layer norm; the label ``num_embeds_ada_norm`` is the null class its training dropped labels to,
which serves the unconditional row of guidance. DiT also predicts the variance (twice the latent
channels out, "learned σ"); the service uses the ε half and its own samplers' variances, so
every knob works as on the other families. The finished latents are decoded by the VAE in one
batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from protocol.schema import ModelInfo, ResolvedConfig
from workers.host_upload import upload
from workers.models.loaded_model import Condition, LoadedModel
from workers.models.vae_codec import VaeCodec


class LatentClassTransformerModel(LoadedModel):
    def __init__(
        self,
        info: ModelInfo,
        scheduler_config: dict[str, Any],
        transformer: torch.nn.Module,
        codec: VaeCodec,
        null_class: int,
        device: torch.device,
        dtype: torch.dtype,
    ) -> None:
        super().__init__(info, scheduler_config, device, dtype)
        self.transformer = transformer
        self.codec = codec
        self.null_class = null_class

    @property
    def network(self) -> torch.nn.Module:
        return self.transformer

    def latent_shape(self, width: int, height: int) -> tuple[int, int, int]:
        f = self.codec.downsampling
        return (self.codec.latent_channels, height // f, width // f)

    def conditions(self, config: ResolvedConfig) -> tuple[Condition, Condition]:
        label = config.class_label if config.class_label is not None else self.null_class
        return label, self.null_class

    def unconditional_condition(self) -> Condition:
        return self.null_class

    def forward(
        self, latents: torch.Tensor, timesteps: torch.Tensor, conditions: Sequence[Condition]
    ) -> torch.Tensor:
        labels = upload(torch.tensor(list(conditions)), self.device)
        output = self.transformer(latents, timestep=timesteps, class_labels=labels).sample
        return output[:, : self.codec.latent_channels]  # type: ignore[no-any-return]

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self.codec.decode(latents)

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.codec.encode(pixels.to(self.device))
