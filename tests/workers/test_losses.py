"""The Fourier-weighted training loss."""

from __future__ import annotations

import torch

from workers.training.losses import diffusion_loss, fourier_weighted_mse, radial_frequency_weights


def test_alpha_zero_is_exactly_the_pixel_mse() -> None:
    residual = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(fourier_weighted_mse(residual, 0.0, 2.0), residual.pow(2).mean(), rtol=1e-5)


def test_high_frequency_errors_cost_more_than_low_frequency_ones() -> None:
    y, x = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    smooth = torch.cos(2 * torch.pi * x / 28).reshape(1, 1, 28, 28)
    checker = torch.cos(torch.pi * (x + y)).reshape(1, 1, 28, 28)
    smooth = smooth / smooth.pow(2).mean().sqrt()
    checker = checker / checker.pow(2).mean().sqrt()
    assert fourier_weighted_mse(checker, 4.0, 2.0) > 3 * fourier_weighted_mse(smooth, 4.0, 2.0)


def test_weights_grow_with_frequency() -> None:
    w = radial_frequency_weights(28, 28, alpha=4.0, power=2.0)
    assert w[0, 0] == 1.0 and w.max() > 4.0


def test_diffusion_loss_dispatch() -> None:
    a, b = torch.zeros(2, 1, 8, 8), torch.ones(2, 1, 8, 8)
    assert diffusion_loss(a, b, "mse").item() == 1.0
    assert diffusion_loss(a, b, "fourier").item() >= 1.0
