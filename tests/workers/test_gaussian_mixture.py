"""The exact-score reference model ``mnist-gauss``: the closed form against dense linear algebra,
the timestep map, the fit, and the model served through the registry, the engine and the API."""

from __future__ import annotations

import base64
import io
import json
import math
import time

import httpx
import numpy as np
import pytest
import torch
from diffusers import EulerDiscreteScheduler
from PIL import Image
from scipy.special import logsumexp

from protocol.schema import ResolvedConfig
from tests.conftest import resolved_config
from workers.images import to_uint8
from workers.models.gaussian_mixture import (
    GaussianMixture,
    GaussianMixtureDenoiser,
    load_gaussian_mixture,
    save_gaussian_mixture,
)
from workers.models.loading import LoadedModel, read_architecture, read_model_info
from workers.models.metadata import ModelMetadata
from workers.models.registry import lookup
from workers.sampling.engine import generate
from workers.training.fit_gaussian import fit_gaussian_mixture, noise_scheduler

NULL = 10
# x_t rows: drawn from these classes, conditioned on these labels (2 != 7 on purpose; 10: null)
DRAWN_FROM = [3, 7, 3, 5, 8, 1]
LABELS = [3, 2, NULL, NULL, NULL, NULL]


@pytest.fixture(scope="module")
def mixture(gauss_model: LoadedModel) -> GaussianMixture:
    return gauss_model.mixture


def dense_covariance(mixture: GaussianMixture, c: int) -> np.ndarray:
    """Σ_c = U diag(λ) Uᵀ + s² (I − U Uᵀ) from the raw parameters, in numpy."""
    u, lam, s2 = mixture.components[c].numpy(), mixture.variances[c].numpy(), float(mixture.floor[c])
    return (u * lam) @ u.T + s2 * (np.eye(u.shape[0]) - u @ u.T)


@pytest.fixture(scope="module")
def covariances(mixture: GaussianMixture) -> list[np.ndarray]:
    return [dense_covariance(mixture, c) for c in range(mixture.num_classes)]


def dense_posterior(
    mixture: GaussianMixture, covariances: list[np.ndarray], x_t: np.ndarray, alpha: float, labels: list[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x̂0, ε̂, w) by brute force: full ᾱΣ + (1−ᾱ)I, np.linalg.solve / slogdet, log-sum-exp."""
    rows, dim = x_t.shape
    mu, log_pi = mixture.means.numpy(), mixture.log_weights.numpy()
    log_density = np.empty((rows, len(covariances)))
    x0_per_class = np.empty((len(covariances), rows, dim))
    for c, sigma in enumerate(covariances):
        cov_t = alpha * sigma + (1 - alpha) * np.eye(dim)
        r = x_t - math.sqrt(alpha) * mu[c]
        solved = np.linalg.solve(cov_t, r.T).T
        sign, log_det = np.linalg.slogdet(cov_t)
        assert sign > 0
        log_density[:, c] = -0.5 * ((r * solved).sum(1) + log_det + dim * math.log(2 * math.pi))
        x0_per_class[c] = mu[c] + math.sqrt(alpha) * solved @ sigma
    logits = log_pi + log_density
    weights = np.exp(logits - logsumexp(logits, axis=1, keepdims=True))
    for row, label in enumerate(labels):
        if label != NULL:
            weights[row] = np.eye(len(covariances))[label]
    x0 = np.einsum("bc,cbd->bd", weights, x0_per_class)
    eps = (x_t - math.sqrt(alpha) * x0) / math.sqrt(1 - alpha)
    return x0, eps, weights


def noisy_rows(mixture: GaussianMixture, t: int, seed: int = 0) -> torch.Tensor:
    """x_t [6, 1, 28, 28] float64: exact draws from ``DRAWN_FROM`` noised to training step t."""
    generator = torch.Generator().manual_seed(seed)
    x0 = torch.cat([mixture.sample_x0(c, 1, generator) for c in DRAWN_FROM])
    alpha = mixture.alphas_cumprod[t]
    return alpha.sqrt() * x0 + (1 - alpha).sqrt() * torch.randn(
        x0.shape, generator=generator, dtype=torch.float64
    )


# ---------------------------------------------------------------------------- closed form


@pytest.mark.parametrize("t", [0, 1, 300, 700, 900, 960, 999])
def test_closed_form_equals_dense_linear_algebra(
    mixture: GaussianMixture, covariances: list[np.ndarray], t: int
) -> None:
    x_t = noisy_rows(mixture, t)
    alpha = mixture.alphas_cumprod[t]
    x0, eps, weights = mixture.posterior(x_t, alpha, torch.tensor(LABELS))
    want_x0, want_eps, want_weights = dense_posterior(
        mixture, covariances, x_t.reshape(6, -1).numpy(), float(alpha), LABELS
    )
    np.testing.assert_allclose(weights.numpy(), want_weights, rtol=0, atol=1e-11)
    np.testing.assert_allclose(x0.numpy(), want_x0, rtol=0, atol=1e-11)
    np.testing.assert_allclose(eps.numpy(), want_eps, rtol=0, atol=1e-9)
    mean = mixture.posterior_mean(x_t, alpha, torch.tensor(LABELS))
    assert mean.shape == x_t.shape and torch.equal(mean.reshape(6, -1), x0)


def test_unconditional_rows_mix_the_classes_at_high_noise_only(mixture: GaussianMixture) -> None:
    """The responsibilities are a real mixture where the dense comparison checks them."""
    null = torch.full((6,), NULL)
    _, _, clean = mixture.posterior(noisy_rows(mixture, 0), mixture.alphas_cumprod[0], null)
    assert clean.argmax(1).tolist() == DRAWN_FROM and bool((clean.max(1).values > 0.999).all())
    _, _, noisy = mixture.posterior(noisy_rows(mixture, 900), mixture.alphas_cumprod[900], null)
    assert float(noisy.max(1).values.min()) < 0.9
    _, _, pure = mixture.posterior(noisy_rows(mixture, 999), mixture.alphas_cumprod[999], null)
    torch.testing.assert_close(pure, mixture.log_weights.exp().expand(6, -1), rtol=0, atol=1e-3)


@pytest.mark.parametrize("t", [0, 999])
def test_v_prediction_is_finite_and_exact_at_both_ends(
    mixture: GaussianMixture, covariances: list[np.ndarray], t: int
) -> None:
    x_t = noisy_rows(mixture, t).float()
    alpha = float(mixture.alphas_cumprod[t])
    denoiser = GaussianMixtureDenoiser(mixture)
    v = denoiser(x_t, torch.full((6,), float(t)), class_labels=torch.tensor(LABELS)).sample
    assert v.dtype == torch.float32 and bool(v.isfinite().all())
    x0, eps, _ = dense_posterior(mixture, covariances, x_t.double().reshape(6, -1).numpy(), alpha, LABELS)
    want_v = math.sqrt(alpha) * eps - math.sqrt(1 - alpha) * x0
    np.testing.assert_allclose(v.double().reshape(6, -1).numpy(), want_v, rtol=0, atol=2e-5)
    # what v-prediction samplers recover from v̂: x̂0 = √ᾱ x_t − √(1−ᾱ) v̂, ε̂ = √(1−ᾱ) x_t + √ᾱ v̂
    flat_x, flat_v = x_t.double().reshape(6, -1).numpy(), v.double().reshape(6, -1).numpy()
    np.testing.assert_allclose(
        math.sqrt(alpha) * flat_x - math.sqrt(1 - alpha) * flat_v, x0, rtol=0, atol=1e-4
    )
    np.testing.assert_allclose(
        math.sqrt(1 - alpha) * flat_x + math.sqrt(alpha) * flat_v, eps, rtol=0, atol=1e-4
    )


def test_epsilon_output_and_low_precision_inputs(mixture: GaussianMixture) -> None:
    x_t = noisy_rows(mixture, 500)
    t = torch.full((6,), 500.0)
    eps = GaussianMixtureDenoiser(mixture, "epsilon")(x_t, t, class_labels=torch.tensor(LABELS)).sample
    _, want_eps, _ = mixture.posterior(x_t, mixture.alphas_cumprod[500], torch.tensor(LABELS))
    torch.testing.assert_close(eps.reshape(6, -1), want_eps, rtol=0, atol=1e-12)
    half = GaussianMixtureDenoiser(mixture)(x_t.bfloat16(), t, class_labels=torch.tensor(LABELS)).sample
    assert half.dtype == torch.bfloat16 and bool(half.isfinite().all())
    with pytest.raises(ValueError, match="class labels"):
        mixture.posterior(x_t, mixture.alphas_cumprod[500], torch.tensor([11] * 6))


# ---------------------------------------------------------------------------- timesteps


def test_integer_timesteps_give_exactly_the_training_alphas(mixture: GaussianMixture) -> None:
    every = torch.arange(1000, dtype=torch.float32)
    assert torch.equal(mixture.alpha_prod_at(every), mixture.alphas_cumprod)
    assert torch.equal(mixture.alphas_cumprod, noise_scheduler().alphas_cumprod.double())


def test_fractional_timesteps_interpolate_log_sigma_like_diffusers(mixture: GaussianMixture) -> None:
    fractional = torch.tensor([0.5, 10.25, 500.5, 946.421, 998.5, 998.999])
    alpha = mixture.alpha_prod_at(fractional)
    low, high = mixture.alphas_cumprod[fractional.long()], mixture.alphas_cumprod[fractional.long() + 1]
    assert bool(((alpha < low) & (alpha > high)).all())  # ᾱ decreases with t
    # the inverse of EulerDiscreteScheduler._sigma_to_t: σ -> t by log σ interpolation
    euler = EulerDiscreteScheduler.from_config(noise_scheduler().config)
    ac = mixture.alphas_cumprod.numpy()
    log_sigmas = np.log(np.sqrt((1 - ac) / ac))
    sigmas = np.sqrt((1 - alpha.numpy()) / alpha.numpy())
    recovered = np.array([euler._sigma_to_t(s, log_sigmas) for s in sigmas]).reshape(-1)
    np.testing.assert_allclose(recovered, fractional.double().numpy(), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="timesteps"):
        mixture.alpha_prod_at(torch.tensor([1000.0]))


# ---------------------------------------------------------------------------- parameters and fit


def test_covariance_has_the_documented_eigenstructure(mixture: GaussianMixture, gauss_model) -> None:  # type: ignore[no-untyped-def]
    u = mixture.components
    torch.testing.assert_close(u.transpose(1, 2) @ u, torch.eye(32, dtype=torch.float64).expand(10, -1, -1))
    assert mixture.rank == 32 and mixture.dim == 784 and mixture.num_classes == 10
    fit = json_metadata(gauss_model)["fit"]
    for c in (0, 3, 9):
        sigma = mixture.class_covariance(c)
        assert sigma.dtype == torch.float64
        np.testing.assert_allclose(sigma.numpy(), dense_covariance(mixture, c), rtol=0, atol=1e-12)
        torch.testing.assert_close(sigma @ u[c], u[c] * mixture.variances[c])  # Σ U = U diag(λ)
        # the floor keeps the data's total variance: tr Σ = Σλ + (D − k) s²
        assert float(sigma.trace()) == pytest.approx(fit["total_variance"][c], abs=0.01)
    assert bool((mixture.floor < mixture.variances.min(1).values).all())


def json_metadata(model: LoadedModel) -> dict:  # type: ignore[type-arg]
    return json.loads((lookup(model.info.name).path / "denoise_model.json").read_text())  # type: ignore[no-any-return]


def test_exact_draws_have_the_class_statistics(mixture: GaussianMixture) -> None:
    n = 4000
    x = mixture.sample_x0(3, n, torch.Generator().manual_seed(0)).reshape(n, -1)
    centred = x - mixture.means[3]
    along = centred @ mixture.components[3]
    ratio = along.var(0) / mixture.variances[3]
    assert float((ratio - 1).abs().max()) < 5 * math.sqrt(2 / n)
    perp = centred - along @ mixture.components[3].T
    floor_ratio = perp.pow(2).sum(1).mean() / ((784 - 32) * mixture.floor[3])
    assert float(floor_ratio) == pytest.approx(1.0, abs=0.01)
    classes = mixture.sample_x0(None, 3000, torch.Generator().manual_seed(1)).reshape(3000, -1)
    nearest = torch.cdist(classes, mixture.means).argmin(1)
    assert len(set(nearest.tolist())) == 10  # the mixture, not one class


def test_fit_recovers_a_known_low_rank_gaussian() -> None:
    generator = torch.Generator().manual_seed(0)
    dim, rank, n = 36, 3, 20000
    basis, _ = torch.linalg.qr(torch.randn(dim, rank, generator=generator, dtype=torch.float64))
    lam, floor = torch.tensor([4.0, 2.0, 1.0], dtype=torch.float64), 0.01
    z = torch.randn(n, dim, generator=generator, dtype=torch.float64)
    perp = z - (z @ basis) @ basis.T
    x = 0.5 + (z @ basis) * lam.sqrt() @ basis.T + math.sqrt(floor) * perp
    labels = torch.zeros(n, dtype=torch.long)
    labels[: n // 4] = 1
    fitted, stats = fit_gaussian_mixture(
        x.reshape(n, 1, 6, 6), labels, rank, 2, noise_scheduler().alphas_cumprod
    )
    for c in (0, 1):
        torch.testing.assert_close(fitted.variances[c], lam, rtol=0.06, atol=0)
        assert float(fitted.floor[c]) == pytest.approx(floor, rel=0.06)
        overlap = torch.linalg.svdvals(fitted.components[c].T @ basis)  # cosines of subspace angles
        assert float(overlap.min()) > 0.999
        data_trace = float(x[labels == c].var(0, unbiased=False).sum())  # the floor keeps it
        assert float(fitted.variances[c].sum() + (dim - rank) * fitted.floor[c]) == pytest.approx(data_trace)
        assert stats["total_variance"][c] == pytest.approx(data_trace, abs=0.01)
        peak = fitted.components[c].abs().argmax(0)
        assert bool((fitted.components[c][peak, torch.arange(rank)] > 0).all())  # the sign convention
    torch.testing.assert_close(fitted.log_weights.exp(), torch.tensor([0.75, 0.25], dtype=torch.float64))


def test_save_and_load_round_trip(mixture: GaussianMixture, tmp_path) -> None:  # type: ignore[no-untyped-def]
    metadata = ModelMetadata(
        conditioning="class_label", num_classes=10, null_class=10, image_size=28, channels=1
    )
    save_gaussian_mixture(mixture, noise_scheduler(), tmp_path, metadata)
    assert read_architecture(tmp_path) == "gaussian_mixture"
    again = load_gaussian_mixture(tmp_path)
    for name in ("means", "components", "variances", "floor", "log_weights", "alphas_cumprod"):
        torch.testing.assert_close(getattr(again, name), getattr(mixture, name), rtol=0, atol=1e-7)
    info, scheduler_config, null_class = read_model_info("copy", tmp_path)
    assert (info.num_classes, null_class, info.image_size, info.channels) == (10, 10, 28, 1)
    assert scheduler_config["prediction_type"] == "v_prediction"
    assert read_architecture(lookup("mnist-unet").path) == "unet2d"


# ---------------------------------------------------------------------------- served


def class_log_densities(mixture: GaussianMixture, x: torch.Tensor) -> torch.Tensor:
    """log N(x; μ_c, Σ_c) for every class (dense Cholesky, independent of the closed form)."""
    flat = x.reshape(-1).double()
    return torch.tensor(
        [
            torch.distributions.MultivariateNormal(mixture.means[c], mixture.class_covariance(c))
            .log_prob(flat)
            .item()
            for c in range(mixture.num_classes)
        ]
    )


def class_margin(mixture: GaussianMixture, x: torch.Tensor, c: int) -> float:
    """log p(x | c) − max over the other classes (nats)."""
    log_p = class_log_densities(mixture, x)
    return float(log_p[c] - torch.cat([log_p[:c], log_p[c + 1 :]]).max())


def test_registry_serves_the_mixture_with_its_metadata(gauss_model: LoadedModel) -> None:
    info = gauss_model.info
    assert (info.conditioning, info.num_classes, info.image_size, info.channels) == ("class_label", 10, 28, 1)
    assert gauss_model.null_class == 10 and info.default_guidance_scale == 1.0
    assert info.prediction_type == "v_prediction" and info.training_noise_schedule == "squaredcos_cap_v2"
    assert isinstance(gauss_model.network, GaussianMixtureDenoiser)
    assert gauss_model.mixture is gauss_model.network.mixture


def test_served_ddim_sample_belongs_to_the_requested_class(
    gauss_model: LoadedModel, mixture: GaussianMixture
) -> None:
    margins = {}
    for guidance in (1.0, 3.0):
        config = resolved_config(
            model="mnist-gauss", class_label=3, steps=50, sampler="ddim", seed=0, guidance_scale=guidance
        )
        sample = generate(gauss_model, config)[0].latent
        assert bool(sample.isfinite().all())
        margins[guidance] = (class_margin(mixture, sample, 3), sample)
    # in 784 dimensions the floor's noise dominates Euclidean distances to class means, so the
    # class is judged by the exact class densities: class 3 wins by hundreds of nats
    assert margins[1.0][0] > 100
    # guidance moves the sample, towards class 3
    assert float((margins[3.0][1] - margins[1.0][1]).abs().max()) > 0.1
    assert margins[3.0][0] > margins[1.0][0]


def test_fractional_timesteps_are_served(gauss_model: LoadedModel, mixture: GaussianMixture) -> None:
    config = resolved_config(
        model="mnist-gauss", class_label=3, steps=20, sampler="euler", schedule="linspace"
    )
    state = generate(gauss_model, config)[0]
    assert any(float(t) != round(float(t)) for t in state.scheduler.timesteps)
    assert class_margin(mixture, state.latent, 3) > 100


def test_stochastic_ddpm_reproduces_the_class_variance(
    gauss_model: LoadedModel, mixture: GaussianMixture
) -> None:
    started = time.perf_counter()
    n = 64
    config = resolved_config(
        model="mnist-gauss", class_label=3, steps=200, sampler="ddpm", deterministic=False, num_images=n
    )
    x = torch.cat([s.latent for s in generate(gauss_model, config)]).reshape(n, -1).double()
    centred = x - mixture.means[3]
    along = centred @ mixture.components[3]
    ratio = along.var(0) / mixture.variances[3]
    perp = centred - along @ mixture.components[3].T
    floor_ratio = float(perp.pow(2).sum(1).mean() / ((784 - 32) * mixture.floor[3]))
    print(
        f"\nDDPM 200 steps, {n} samples of class 3 in {time.perf_counter() - started:.1f} s: var/λ top-1 "
        f"{float(ratio[0]):.3f}, top-8 mean {float(ratio[:8].mean()):.3f}, floor {floor_ratio:.3f}"
    )
    assert 0.5 < float(ratio[0]) < 1.6  # one direction, 64 draws: the estimate's sd is ~0.18
    assert 0.8 < float(ratio[:8].mean()) < 1.2
    assert 0.8 < floor_ratio < 1.1


# ---------------------------------------------------------------------------- over HTTP


def test_api_round_trip_with_a_second_worker(
    client: httpx.Client, gauss_worker_process: dict[str, str], gauss_model: LoadedModel
) -> None:
    deadline = time.monotonic() + 15  # the API caches the model list for a few seconds
    names: list[str] = []
    while time.monotonic() < deadline:
        names = [m["name"] for m in client.get("/v1/models").json()]
        if "mnist-gauss" in names:
            break
        time.sleep(0.2)
    assert names == ["mnist-gauss", "mnist-text", "mnist-unet"]
    response = client.post(
        "/v1/generations", json={"model": "mnist-gauss", "class_label": 3, "steps": 20, "seed": 1}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "succeeded" and body["config"]["model"] == "mnist-gauss"
    assert body["config"]["guidance_scale"] == 1.0  # the model's default
    png = Image.open(io.BytesIO(base64.b64decode(body["images"][0]["png_base64"])))
    # the worker process computed exactly what the in-process engine computes
    local = generate(gauss_model, ResolvedConfig.model_validate(body["config"]))[0].latent
    assert np.array_equal(np.array(png), to_uint8(local))
