"""Pixels ⇄ latents with a diffusers ``AutoencoderKL``, as latent diffusion models use it
(Rombach et al. 2022): the diffusion runs on z = s · (E(x) − μ_shift), and an image is
D(z / s + μ_shift), with s the VAE's ``scaling_factor`` (chosen at training so that z has unit
variance) and μ_shift its ``shift_factor`` (0 for Stable Diffusion 1.x).
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL


class VaeCodec:
    def __init__(self, vae: AutoencoderKL) -> None:
        self.vae = vae
        config = vae.config
        self.scaling_factor = float(config.scaling_factor)
        self.shift_factor = float(getattr(config, "shift_factor", None) or 0.0)
        self.latent_channels = int(config.latent_channels)
        self.image_channels = int(config.out_channels)
        # each encoder block but the last halves the resolution
        self.downsampling = 2 ** (len(config.block_out_channels) - 1)

    @torch.inference_mode()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """[B, latent_channels, h, w] latents -> [B, C, h·f, w·f] pixels in about [-1, 1], in one batch."""
        z = latents.to(self.vae.dtype) / self.scaling_factor + self.shift_factor
        return self.vae.decode(z).sample.float()

    @torch.inference_mode()
    def encode(self, pixels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """[B, C, H, W] pixels in [-1, 1] -> latents, sampled from the posterior with ``generator``
        (its mean when None)."""
        posterior = self.vae.encode(pixels.to(self.vae.dtype)).latent_dist
        z = posterior.mean if generator is None else posterior.sample(generator)
        return ((z.float() - self.shift_factor) * self.scaling_factor).float()
