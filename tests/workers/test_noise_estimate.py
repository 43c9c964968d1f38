"""Donoho's wavelet-MAD noise estimate recovers a known noise level and ignores smooth content."""

from __future__ import annotations

import numpy as np
import pytest

from workers.noise_estimate import haar_diagonal_details, noise_estimate


def test_a_flat_or_smooth_image_has_no_noise() -> None:
    assert noise_estimate(np.zeros((28, 28), dtype=np.uint8)) == 0.0
    ramp = np.add.outer(np.arange(28), np.arange(28)).astype(np.uint8) * 4  # a linear gradient
    assert noise_estimate(ramp) == 0.0


@pytest.mark.parametrize("sigma", [2.0, 5.0, 12.0])
def test_recovers_the_standard_deviation_of_added_gaussian_noise(sigma: float) -> None:
    rng = np.random.default_rng(0)
    clean = np.add.outer(np.arange(256), np.arange(256)) / 4.0 + 60.0  # smooth, in 60..188
    noisy = np.clip(np.round(clean + rng.normal(0, sigma, clean.shape)), 0, 255).astype(np.uint8)
    assert noise_estimate(noisy) == pytest.approx(sigma, rel=0.15)  # 8-bit rounding adds a little


def test_more_noise_scores_higher_on_a_digit_sized_image() -> None:
    rng = np.random.default_rng(1)
    base = np.full((28, 28), 128.0)
    low, high = (np.clip(base + rng.normal(0, s, base.shape), 0, 255).astype(np.uint8) for s in (3, 20))
    assert noise_estimate(low) < noise_estimate(high)


def test_haar_details_keep_white_noise_variance_and_channels_average() -> None:
    rng = np.random.default_rng(2)
    details = haar_diagonal_details(rng.normal(0, 1, (512, 512)))
    assert details.shape == (256, 256) and details.std() == pytest.approx(1.0, rel=0.02)
    colour = np.stack([np.zeros((28, 28)), np.zeros((28, 28)), np.eye(28) * 200], axis=-1).astype(np.uint8)
    assert noise_estimate(colour) == pytest.approx(noise_estimate(colour[..., 2]) / 3, abs=1e-3)
