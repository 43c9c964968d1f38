"""σ̂ of an init image for ``strength: "auto"``: the std of its additive noise, in gray levels.

Two regimes, told apart by the pixels piled up at an end of the 8-bit range:

1. **Clipped noise** (the usual case for a noisy image saved as PNG: a black background plus
   Gaussian noise is clipped at 0). Where the clean image sits at the bound b, the observed value
   is max(b, b + σ n): half of those pixels pile up exactly at b, the other half spread beyond
   it as a half-normal of scale σ. So the pile-up count Z says how many pixels the flat region
   holds (2Z), and the values just beyond b estimate σ: a maximum-likelihood fit of a censored
   normal, N(b, σ²) rounded to integers, to the pixels at b and those within c = 3σ₀ of it
   (σ₀ is the region's 75th percentile / 0.6745, the half-normal's median; c is refitted once
   from the result). Pixels whose 3×3 mean lies past the middle of the range, and their
   neighbours, are left out first: they are the strokes, whose values would otherwise pass for
   noise (on held-out digits this takes the bias at σ = 50 from +7% to under 1%). The wavelet
   estimate sees only the unclipped half of that noise and reads about 0.6 σ here.
2. **No pile-up** (fewer than ``PILE_UP_FRACTION`` of the pixels at either end): Donoho's
   wavelet-MAD estimate (``workers.noise_estimate``), the one every response reports.

Assumptions (docs/denoise.md): the noise is additive, roughly Gaussian and roughly white; in case
1 the region at the bound is flat (a clean background). Structured noise (JPEG blocks,
correlated or signal-dependent noise) is read as a different σ and chooses the wrong start: too
small leaves noise in, too large removes detail.
"""

from __future__ import annotations

import math

import numpy as np

from workers.noise_estimate import noise_estimate

PILE_UP_FRACTION = 0.1  # pixels at one end of the range that mark the noise as clipped there
HALF_NORMAL_MEDIAN = 0.6745  # median of |z|, z ~ N(0, 1)
TRUNCATION = 3.0  # fit the pixels within TRUNCATION · σ of the bound
FAR_FROM_BOUND = 128  # a 3×3 mean this far from the bound marks a stroke, not the flat region
PIXEL_MAX = 255


def _normal_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def _censored_fit(distances: np.ndarray, piled: int, sigma0: float) -> float:
    """σ by maximum likelihood of a normal centred on the bound, rounded to integers, censored at
    the bound (``piled`` pixels there) and truncated at c = TRUNCATION · σ₀ (``distances`` are the
    other pixels' distances from the bound)."""
    c = TRUNCATION * sigma0
    inside = distances[(distances > 0) & (distances <= c)]
    grid = sigma0 * np.exp(np.linspace(-0.7, 0.7, 281))
    best, best_ll = sigma0, -math.inf
    square_sum = float(np.sum(inside**2))
    for sigma in grid:
        s = float(sigma)
        # P(at the bound) = P(n σ < 0.5): rounding puts |noise| < 0.5 there too
        ll = piled * math.log(max(_normal_cdf(0.5 / s), 1e-300))
        ll += -square_sum / (2 * s * s) - len(inside) * math.log(s)
        ll -= (piled + len(inside)) * math.log(max(_normal_cdf((c + 0.5) / s), 1e-300))
        if ll > best_ll:
            best, best_ll = s, ll
    return best


def clipped_noise_sigma(values: np.ndarray) -> float | None:
    """σ̂ from the pixels piled up at 0 (``values``: distances from the bound, ≥ 0), or None when
    fewer than PILE_UP_FRACTION of them are there."""
    flat = np.sort(values.ravel().astype(np.float64))
    piled = int(np.sum(flat <= 0))
    # fewer than PILE_UP_FRACTION: no clipping to speak of; more than 2/3: the noise rounds to 0
    # for most pixels (σ of a gray level or so), too little to fit: the wavelet estimate serves both
    if piled < PILE_UP_FRACTION * flat.size or round(1.5 * piled) >= flat.size:
        return None
    # the flat region holds 2·piled pixels; its 75th percentile is the half-normal's median
    sigma0 = float(flat[round(1.5 * piled)]) / HALF_NORMAL_MEDIAN
    if sigma0 <= 0:
        return 0.0
    sigma = _censored_fit(flat, piled, sigma0)
    return _censored_fit(flat, piled, sigma)  # once more, truncated at 2σ̂ rather than 2σ₀


def _neighbourhood(values: np.ndarray, reduce: str) -> np.ndarray:
    """The 3×3 mean or max around each pixel (edges repeated)."""
    padded = np.pad(values, 1, mode="edge")
    height, width = values.shape
    stack = np.stack([padded[dy : dy + height, dx : dx + width] for dy in range(3) for dx in range(3)])
    return stack.mean(axis=0) if reduce == "mean" else stack.max(axis=0)


def flat_region(distances: np.ndarray) -> np.ndarray:
    """The pixels (distances from the bound) outside the strokes: those whose 3×3 mean is less
    than FAR_FROM_BOUND from the bound and that touch no pixel whose mean is farther."""
    far = (_neighbourhood(distances.astype(np.float64), "mean") > FAR_FROM_BOUND).astype(np.float64)
    return distances[_neighbourhood(far, "max") == 0]


def init_noise_sigma(pixels: np.ndarray) -> float:
    """σ̂ in gray levels of uint8 pixels [H, W] or [H, W, C] (the mean over channels)."""
    channels = pixels[..., None] if pixels.ndim == 2 else pixels
    sigmas = []
    for k in range(channels.shape[-1]):
        channel = channels[..., k].astype(np.int64)
        low, high = np.sum(channel == 0), np.sum(channel == PIXEL_MAX)
        # the end with the larger pile-up; its distances from the bound
        distances = channel if low >= high else PIXEL_MAX - channel
        sigma = clipped_noise_sigma(flat_region(distances))
        sigmas.append(noise_estimate(channels[..., k]) if sigma is None else sigma)
    return round(float(np.mean(sigmas)), 4)
