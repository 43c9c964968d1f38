"""The sampling-noise metrics give the known answers on synthetic data."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import linalg

from workers.evaluation.noise_metrics import (
    ClassGaussian,
    frechet_distance,
    frechet_distance_to_gaussian,
    gaussian_statistics,
    high_frequency_ratio,
    high_frequency_share,
    structured_frechet_distance,
    variance_ratios,
)
from workers.training.data import load_mnist_digits, to_unit_range


def _reference(dim: int = 120, rank: int = 6, seed: int = 0) -> ClassGaussian:
    rng = np.random.default_rng(seed)
    components, _ = np.linalg.qr(rng.standard_normal((dim, rank)))
    return ClassGaussian(
        mean=rng.uniform(-1, 1, dim),
        components=components,
        variances=np.linspace(4.0, 0.5, rank),
        floor=0.04,
    )


def test_exact_draws_have_variance_ratios_near_one() -> None:
    reference = _reference()
    low, high = variance_ratios(reference.sample(4000, np.random.default_rng(1)), reference)
    assert low == pytest.approx(1.0, abs=0.01)
    assert high == pytest.approx(1.0, abs=0.05)


def test_doubled_noise_in_the_low_directions_quadruples_the_low_ratio_only() -> None:
    reference = _reference()
    exact = reference.sample(4000, np.random.default_rng(2))
    residual = exact - reference.mean
    top = (residual @ reference.components) @ reference.components.T
    noisy = reference.mean + top + 2.0 * (residual - top)  # std × 2 off the principal directions
    low, high = variance_ratios(noisy, reference)
    assert low == pytest.approx(4.0, abs=0.05)
    assert high == pytest.approx(1.0, abs=0.05)
    smoothed_low, _ = variance_ratios(reference.mean + top, reference)  # nothing left off U
    assert smoothed_low == pytest.approx(0.0, abs=1e-12)


def test_halved_principal_variance_halves_the_high_ratio() -> None:
    reference = _reference()
    exact = reference.sample(4000, np.random.default_rng(3))
    residual = exact - reference.mean
    top = (residual @ reference.components) @ reference.components.T
    _, high = variance_ratios(reference.mean + top / np.sqrt(2) + (residual - top), reference)
    assert high == pytest.approx(0.5, abs=0.03)


def test_frechet_distance_of_identical_and_shifted_gaussians() -> None:
    reference = _reference()
    covariance = reference.covariance()
    assert frechet_distance(reference.mean, covariance, reference.mean, covariance) == pytest.approx(
        0.0, abs=1e-8
    )
    shift = np.random.default_rng(4).normal(0, 0.3, reference.dim)
    shifted = frechet_distance(reference.mean + shift, covariance, reference.mean, covariance)
    assert shifted == pytest.approx(float(np.sum(shift**2)), rel=1e-7)


def test_frechet_distance_of_scaled_isotropic_gaussians() -> None:
    # N(0, a I) vs N(0, b I) in d dimensions: d (√a − √b)²
    d, a, b = 50, 0.25, 1.0
    value = frechet_distance(np.zeros(d), a * np.eye(d), np.zeros(d), b * np.eye(d))
    assert value == pytest.approx(d * (np.sqrt(a) - np.sqrt(b)) ** 2, rel=1e-9)


@pytest.mark.parametrize("n", [40, 400])  # fewer and more samples than dimensions
def test_sample_frechet_distance_matches_the_scipy_sqrtm_formula(n: int) -> None:
    reference = _reference()
    samples = reference.sample(n, np.random.default_rng(5)) * 1.1 + 0.05
    mean, covariance = gaussian_statistics(samples)
    sigma = reference.covariance()
    root = linalg.sqrtm(linalg.sqrtm(sigma) @ covariance @ linalg.sqrtm(sigma)).real
    expected = np.sum((mean - reference.mean) ** 2) + np.trace(covariance + sigma - 2 * root)
    assert frechet_distance_to_gaussian(samples, reference) == pytest.approx(expected, rel=1e-6)
    assert frechet_distance(mean, covariance, reference.mean, sigma) == pytest.approx(expected, rel=1e-6)


def test_frechet_floor_of_exact_draws_shrinks_with_n_and_noise_raises_it() -> None:
    reference = _reference()
    rng = np.random.default_rng(6)
    small, large = (frechet_distance_to_gaussian(reference.sample(n, rng), reference) for n in (50, 2000))
    assert 0 < large < small
    noisy = reference.sample(2000, rng) + rng.normal(0, 0.2, (2000, reference.dim))  # + 0.04 everywhere
    # population FD: Σ over the eigenvalues e of Σ of (√(e + 0.04) − √e)²
    eigenvalues = np.concatenate([reference.variances, np.full(reference.dim - reference.rank, 0.04)])
    expected = float(np.sum((np.sqrt(eigenvalues + 0.04) - np.sqrt(eigenvalues)) ** 2))
    assert frechet_distance_to_gaussian(noisy, reference) - large == pytest.approx(expected, rel=0.1)


def _scaled_low_directions(reference: ClassGaussian, samples: np.ndarray, ratio: float) -> np.ndarray:
    residual = samples - reference.mean
    top = (residual @ reference.components) @ reference.components.T
    return reference.mean + top + np.sqrt(ratio) * (residual - top)


def test_structured_frechet_distance_is_consistent_where_the_sample_fd_is_not() -> None:
    reference = _reference(dim=400, rank=8)
    rng = np.random.default_rng(9)
    exact = reference.sample(100, rng)  # n < D, as in the sweep
    assert abs(structured_frechet_distance(exact, reference)) < 0.5
    shift = np.full(reference.dim, 0.05)
    assert structured_frechet_distance(exact + shift, reference) == pytest.approx(
        structured_frechet_distance(exact, reference) + np.sum(shift**2), abs=0.2
    )
    free, floor = reference.dim - reference.rank, reference.floor
    sample_fd, structured = {}, {}
    for ratio in (0.25, 1.0, 2.0):
        x = _scaled_low_directions(reference, exact, ratio)
        sample_fd[ratio] = frechet_distance_to_gaussian(x, reference)
        structured[ratio] = structured_frechet_distance(x, reference)
        population = free * floor * (1 - np.sqrt(ratio)) ** 2
        assert structured[ratio] == pytest.approx(population, abs=0.5)
    # at n < D the sample FD prefers the over-smoothed samples; FD* does not
    assert sample_fd[0.25] < sample_fd[1.0]
    assert structured[0.25] > structured[1.0] < structured[2.0]


def test_structured_frechet_distance_matches_the_full_fd_at_large_n() -> None:
    reference = _reference(dim=40, rank=4)
    x = _scaled_low_directions(reference, reference.sample(40000, np.random.default_rng(10)), 0.5)
    full = frechet_distance_to_gaussian(x, reference)
    assert structured_frechet_distance(x, reference) == pytest.approx(full, abs=0.01)


def test_high_frequency_ratio_is_one_for_the_data_and_above_one_with_white_noise() -> None:
    images = to_unit_range(load_mnist_digits()[0][:500])
    assert high_frequency_ratio(images, images) == pytest.approx(1.0, abs=1e-12)
    noisy = images + np.random.default_rng(7).normal(0, 0.1, images.shape)
    assert high_frequency_ratio(noisy, images) > 1.5
    blurred = (images + np.roll(images, 1, axis=-1) + np.roll(images, 1, axis=-2)) / 3
    assert high_frequency_ratio(blurred, images) < 1.0


def test_white_noise_puts_its_share_on_the_high_frequency_area() -> None:
    noise = np.random.default_rng(8).normal(0, 1, (400, 28, 28))
    f = np.fft.fftfreq(28)
    area = np.mean((np.sqrt(f[:, None] ** 2 + f[None, :] ** 2) > 0.25).ravel()[1:])  # DC excluded
    assert high_frequency_share(noise) == pytest.approx(area * 784 / 783, abs=0.01)
    assert high_frequency_share(np.zeros((2, 28, 28))) == 0.0
