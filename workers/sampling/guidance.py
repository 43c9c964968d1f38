"""Classifier-free guidance of one image's two rows.

Ho & Salimans (2022): ε̂ = ε_u + w (ε_c − ε_u), applied to the model's output whatever it predicts
(ε or v: both are linear in the score, so the combination is the same). Guidance rescale
(Lin et al. 2024, eq. 15-16): ε_rescaled = ε̂ · std(ε_c) / std(ε̂), ε = φ ε_rescaled + (1 − φ) ε̂.
Notation map: scale -> w, rescale -> φ, eps_cond -> ε_c, eps_uncond -> ε_u.
"""

from __future__ import annotations

import torch


def combine_guidance(
    eps_cond: torch.Tensor, eps_uncond: torch.Tensor, scale: float, rescale: float
) -> torch.Tensor:
    guided = eps_uncond + scale * (eps_cond - eps_uncond)
    if rescale > 0:
        dims = list(range(1, eps_cond.ndim))
        std_cond = eps_cond.std(dim=dims, keepdim=True)
        std_guided = guided.std(dim=dims, keepdim=True)
        rescaled = guided * (std_cond / std_guided)
        guided = rescale * rescaled + (1 - rescale) * guided
    return guided
