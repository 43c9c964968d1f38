"""σ̂ of an init image (``workers.noise_level``): clipped Gaussian noise on digits, noise on a
mid-gray image (the wavelet branch), and a clean digit."""

from __future__ import annotations

import numpy as np

from workers.noise_estimate import noise_estimate
from workers.noise_level import init_noise_sigma
from workers.training.data import holdout_indices, load_mnist_digits


def noisy_digits(sigma: float, count: int = 60, seed: int = 0) -> np.ndarray:
    images, labels = load_mnist_digits()
    clean = images[holdout_indices(labels)[:count]].astype(np.float64)
    noisy = clean + sigma * np.random.default_rng(seed).standard_normal(clean.shape)
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


def test_clipped_noise_on_digits_is_measured_where_the_wavelet_estimate_reads_low() -> None:
    for sigma in (10, 25, 50):
        noisy = noisy_digits(sigma)
        estimates = np.array([init_noise_sigma(x) for x in noisy])
        assert abs(estimates.mean() / sigma - 1) < 0.06, (sigma, estimates.mean())
        assert np.mean(np.abs(estimates / sigma - 1) < 0.15) >= 0.8, (sigma, estimates)
        # the responses' estimate sees only the unclipped half of the background's noise
        assert np.mean([noise_estimate(x) for x in noisy]) < 0.75 * sigma


def test_without_a_pile_up_the_wavelet_estimate_is_used() -> None:
    rng = np.random.default_rng(1)
    gray = np.clip(np.round(128 + 20 * rng.standard_normal((64, 64))), 0, 255).astype(np.uint8)
    assert init_noise_sigma(gray) == noise_estimate(gray)
    assert abs(init_noise_sigma(gray) / 20 - 1) < 0.1


def test_a_clean_digit_measures_no_noise_and_colour_averages_channels() -> None:
    images, _ = load_mnist_digits()
    assert init_noise_sigma(images[0]) == 0.0
    rgb = np.stack([noisy_digits(25, 1)[0]] * 3, axis=-1)
    assert init_noise_sigma(rgb) == init_noise_sigma(rgb[..., 0])
