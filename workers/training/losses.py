"""Training objectives for the ε-prediction network.

``mse``: the simple objective of Ho et al. (2020), ``E ||ε - ε_θ(x_t, t)||²``.

``fourier``: the same residual measured in the 2-D Fourier domain with weights that grow
with spatial frequency, so that errors in fine detail (where sampling noise lives) cost more:

    L = mean_f  w(f) |F[ε - ε_θ](f)|² / (H W),   w(f) = 1 + α (|f| / f_Nyquist)^p

with |f| the radial frequency of bin f in cycles per pixel and f_Nyquist = 0.5. With α = 0 it
equals the MSE exactly (Parseval), so ``α`` and ``p`` move it smoothly away from MSE.
"""

from __future__ import annotations

from typing import Literal

import torch

LossName = Literal["mse", "fourier"]


def radial_frequency_weights(height: int, width: int, alpha: float, power: float) -> torch.Tensor:
    """w(f) = 1 + α (|f| / 0.5)^p on the ``rfft2`` grid, shape [H, W // 2 + 1]."""
    fy = torch.fft.fftfreq(height).abs().unsqueeze(1)
    fx = torch.fft.rfftfreq(width).unsqueeze(0)
    radius = torch.sqrt(fy**2 + fx**2) / 0.5
    return 1.0 + alpha * radius.pow(power)


def fourier_weighted_mse(residual: torch.Tensor, alpha: float, power: float) -> torch.Tensor:
    """Frequency-weighted squared error of ``residual`` [B, C, H, W] (see module docstring)."""
    height, width = residual.shape[-2:]
    spectrum = torch.fft.rfft2(residual, norm="ortho")
    weights = radial_frequency_weights(height, width, alpha, power).to(residual.device)
    # rfft2 keeps only half of the symmetric spectrum: count the mirrored columns twice so
    # that alpha = 0 reproduces the pixel MSE exactly.
    multiplicity = torch.full((width // 2 + 1,), 2.0, device=residual.device)
    multiplicity[0] = 1.0
    if width % 2 == 0:
        multiplicity[-1] = 1.0
    energy = spectrum.abs().pow(2) * weights * multiplicity
    return energy.sum(dim=(-2, -1)).mean() / (height * width)


def diffusion_loss(
    predicted_noise: torch.Tensor,
    noise: torch.Tensor,
    loss: LossName,
    fourier_alpha: float = 4.0,
    fourier_power: float = 2.0,
) -> torch.Tensor:
    residual = predicted_noise - noise
    if loss == "mse":
        return residual.pow(2).mean()
    return fourier_weighted_mse(residual, fourier_alpha, fourier_power)
