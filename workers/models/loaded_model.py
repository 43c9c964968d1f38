"""A loaded model as the engine sees it, whatever its family: the latent it denoises, how one
forward row is conditioned, one batched forward with per-row timesteps and conditions, and how a
finished latent becomes pixels.

Per-row conditioning is what lets different requests share a forward pass: a row's condition is
a class label (``int``; the null class is the unconditional row), text embeddings
(``torch.Tensor`` [1, L, D]; the empty or negative prompt's for the unconditional row), or
``None`` for a model that takes no condition.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, TypeAlias

import torch

from protocol.schema import ModelInfo, ResolvedConfig
from workers.models.optimized_schedules import Table as OptimizedTable

Condition: TypeAlias = int | torch.Tensor | None


class LoadedModel(ABC):
    """Args:
    info: what ``GET /v1/models`` says of it.
    scheduler_config: the training noise schedule (``scheduler/scheduler_config.json``).
    """

    def __init__(
        self, info: ModelInfo, scheduler_config: dict[str, Any], device: torch.device, dtype: torch.dtype
    ) -> None:
        self.info = info
        self.scheduler_config = scheduler_config
        self.device = device
        self.dtype = dtype
        self.load_seconds = 0.0
        # sampler -> steps -> timesteps of ``schedule: "optimized"`` (the folder's optimized_schedules.json)
        self.optimized_schedules: OptimizedTable = {}

    @property
    @abstractmethod
    def network(self) -> torch.nn.Module:
        """The denoising network (a UNet, a transformer, or the closed-form mixture)."""

    @abstractmethod
    def latent_shape(self, width: int, height: int) -> tuple[int, int, int]:
        """(C, H, W) of the latent that the reverse process runs on for a width × height image."""

    @abstractmethod
    def conditions(self, config: ResolvedConfig) -> tuple[Condition, Condition]:
        """The conditional row's condition and the unconditional row's (used when guided)."""

    @abstractmethod
    def forward(
        self, latents: torch.Tensor, timesteps: torch.Tensor, conditions: Sequence[Condition]
    ) -> torch.Tensor:
        """The network's prediction (ε, v or x₀, as trained) for each row, in the latent's channels."""

    def tokenizer_json(self) -> str | None:
        """A prompt model's tokenizer in the ``tokenizers`` JSON format (None: takes no prompt)."""
        return None

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Finished latents -> pixels in [-1, 1], as one batch (pixel models: the latents)."""
        return latents

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels in [-1, 1] [B, C, H, W] -> the latents the reverse process runs on (pixel
        models: the pixels; latent models: the VAE posterior's mean, so an init image gives one
        latent whatever the seed)."""
        return pixels

    @torch.inference_mode()
    def warm_up(self, batch_sizes: Sequence[int] = (1, 2)) -> None:
        """Forwards of ``batch_sizes`` rows before the worker reports ready (compilation, kernel
        selection, allocator pools), so the first request does not pay for them."""
        shape = self.latent_shape(self.info.image_size, self.info.image_size)
        condition = self.warm_up_condition()
        for rows in batch_sizes:
            latents = torch.zeros(rows, *shape, device=self.device, dtype=self.dtype)
            t = torch.full(
                (rows,), self.info.num_train_timesteps - 1, device=self.device, dtype=torch.float32
            )
            self.forward(latents, t, [condition] * rows)
        self.decode(torch.zeros(1, *shape, device=self.device, dtype=self.dtype))

    @abstractmethod
    def unconditional_condition(self) -> Condition:
        """The condition of an unconditional row."""

    def warm_up_condition(self) -> Condition:
        """Any valid condition, for the warm-up forwards."""
        return self.unconditional_condition()
