"""A noise figure for every generated image: Donoho's wavelet estimator of the noise level.

Donoho & Johnstone (1994), "Ideal spatial adaptation by wavelet shrinkage", §3.2: the finest
diagonal wavelet coefficients of a piecewise-smooth image are mostly noise, so

    σ̂ = median(|d_HH1|) / 0.6745

estimates the standard deviation σ of additive Gaussian noise (0.6745 is the median of |z|
for z ~ N(0, 1)). We use the orthonormal Haar wavelet: for each 2×2 block [[a, b], [c, d]],
d_HH1 = (a − b − c + d) / 2, which keeps σ unchanged for white noise. The estimate is taken on
the delivered 8-bit pixels, so it is in gray levels (0–255) and measures what the client gets;
a clean digit on a flat background scores near 0, residual sampling noise raises it.
"""

from __future__ import annotations

import numpy as np

MAD_TO_SIGMA = 0.6745


def haar_diagonal_details(channel: np.ndarray) -> np.ndarray:
    """d_HH1 of a 2-D array (an odd last row or column is dropped)."""
    height, width = (channel.shape[0] // 2) * 2, (channel.shape[1] // 2) * 2
    x = channel[:height, :width].astype(np.float64)
    a, b = x[0::2, 0::2], x[0::2, 1::2]
    c, d = x[1::2, 0::2], x[1::2, 1::2]
    return (a - b - c + d) / 2.0


def noise_estimate(pixels: np.ndarray) -> float:
    """σ̂ in gray levels for uint8 pixels [H, W] or [H, W, C] (the mean over channels)."""
    channels = pixels[..., None] if pixels.ndim == 2 else pixels
    sigmas = [
        float(np.median(np.abs(haar_diagonal_details(channels[..., k])))) / MAD_TO_SIGMA
        for k in range(channels.shape[-1])
    ]
    return round(float(np.mean(sigmas)), 4)
