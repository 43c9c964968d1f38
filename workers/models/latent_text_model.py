"""Text-to-image in latent space, in the Stable Diffusion layout (Rombach et al. 2022): a
``UNet2DConditionModel`` denoises VAE latents with cross-attention on CLIP text embeddings; the
finished latents are decoded by the ``AutoencoderKL`` in one batch.

Each image carries the embeddings of its own prompt and, for guidance, of its negative prompt
(the empty prompt by default, as Stable Diffusion's pipeline does), so rows with different
prompts share one UNet forward. x₀ clipping and dynamic thresholding act on x̂₀ in latent space.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from protocol.schema import ModelInfo, ResolvedConfig
from workers.models.loaded_model import Condition, LoadedModel
from workers.models.prompt_encoder import PromptEncoder
from workers.models.vae_codec import VaeCodec


class LatentTextModel(LoadedModel):
    def __init__(
        self,
        info: ModelInfo,
        scheduler_config: dict[str, Any],
        unet: torch.nn.Module,
        codec: VaeCodec,
        prompts: PromptEncoder,
        device: torch.device,
        dtype: torch.dtype,
    ) -> None:
        super().__init__(info, scheduler_config, device, dtype)
        self.unet = unet
        self.codec = codec
        self.prompts = prompts

    @property
    def network(self) -> torch.nn.Module:
        return self.unet

    def latent_shape(self, width: int, height: int) -> tuple[int, int, int]:
        f = self.codec.downsampling
        return (self.codec.latent_channels, height // f, width // f)

    def conditions(self, config: ResolvedConfig) -> tuple[Condition, Condition]:
        return self.prompts.embed(config.prompt or ""), self.prompts.embed(config.negative_prompt or "")

    def unconditional_condition(self) -> Condition:
        return self.prompts.embed("")

    def forward(
        self, latents: torch.Tensor, timesteps: torch.Tensor, conditions: Sequence[Condition]
    ) -> torch.Tensor:
        embeddings = torch.cat([c for c in conditions if isinstance(c, torch.Tensor)]).to(self.dtype)
        if embeddings.shape[0] != latents.shape[0]:
            raise ValueError("every row of a text model needs its prompt embeddings")
        return self.unet(latents, timesteps, encoder_hidden_states=embeddings).sample  # type: ignore[no-any-return]

    def tokenizer_json(self) -> str | None:
        return self.prompts.tokenizer_json()

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self.codec.decode(latents)

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.codec.encode(pixels.to(self.device))
