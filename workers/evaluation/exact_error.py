"""The exact error of a sampler on the exact-score model, in closed form: no images are drawn.

On one class of ``mnist-gauss``, x_0 ~ N(μ, Σ) with Σ = U diag(λ) Uᵀ + s² (I − U Uᵀ), and the
denoiser is linear and diagonal in Σ's eigenbasis (``workers.models.gaussian_mixture``): along an
eigendirection of variance e, with m = the mean's coordinate and ᾱ = ᾱ_t,

    x̂_0 = m + g (x − √ᾱ m),   ε̂ = h (x − √ᾱ m),   g = √ᾱ e / d,   h = √(1 − ᾱ) / d,   d = ᾱ e + 1 − ᾱ.

Every sampler the service runs (guidance 1, no clipping) combines x_t, x̂_0, ε̂ and fresh noise
linearly with coefficients that depend on the step only, so after the last step each coordinate is

    x_out = a z + β m + Σ_j c_j n_j        z: the initial latent, n_j: the noise injected at step j

and the output is exactly N(β ⊙ μ, diag(a² + Σ_j c_j²)) in that eigenbasis. We measure a, β and
every c_j by running the *served scheduler itself* (``build_scheduler``, the engine's loop of
``scale_model_input``, model, ``step``) on "lanes", one scalar per coefficient and eigenvalue
group: a lane with z = 1, m = 0 gives a; z = 0, m = 1 gives β; z = 0, m = 0 with unit noise at
step j only (the scheduler's ``noise_source`` hook) gives c_j. The D − k floor directions share
one eigenvalue, so one lane group stands for all of them. With A = a² + Σ_j c_j², the population
values of the sweep's metrics (``noise_metrics``) follow:

    FD*  = Σ_i (√A_i − √λ_i)² + (D − k)(√A_s − s)² + Σ_i (β_i − 1)² m_i² + (β_s − 1)² |μ⊥|²
    low  = ((D − k) A_s + (β_s − 1)² |μ⊥|²) / ((D − k) s²),      high = mean_i A_i / λ_i

FD* here is the limit that the sweep's estimator approaches as n grows (its n = 128 floor, the
"exact draws" row, is estimator noise, not sampler error): noise-free, so it can rank schedules
that differ by far less than the estimator's spread, and costs one scheduler run on a few
hundred scalars instead of hundreds of images.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from protocol.schema import ResolvedConfig
from workers.models.gaussian_mixture import GaussianMixture
from workers.sampling.scheduler_factory import OptimizedTimesteps, build_scheduler


@dataclass(frozen=True)
class ClassSpectrum:
    """One class in Σ_c's eigenbasis: eigenvalue groups (the k principal ones, then the floor)."""

    variances: np.ndarray  # [G] λ_1..λ_k, s²
    counts: np.ndarray  # [G] 1, ..., 1, D − k
    mean_squares: np.ndarray  # [G] (u_iᵀμ)², then |μ⊥|²


def class_spectra(mixture: GaussianMixture, classes: Sequence[int]) -> dict[int, ClassSpectrum]:
    spectra = {}
    for c in classes:
        u, mean = mixture.components[c].cpu(), mixture.means[c].cpu()
        coords = u.T @ mean
        perp_sq = float((mean**2).sum() - (coords**2).sum())
        spectra[c] = ClassSpectrum(
            variances=np.append(mixture.variances[c].cpu().numpy(), float(mixture.floor[c])),
            counts=np.append(np.ones(mixture.rank), mixture.dim - mixture.rank),
            mean_squares=np.append(coords.numpy() ** 2, max(perp_sq, 0.0)),
        )
    return spectra


@dataclass(frozen=True)
class ExactError:
    """The population metrics of one sampler setting, per class and averaged."""

    fd: float  # FD* (the module doc), mean over classes
    low_ratio: float
    high_ratio: float
    per_class: dict[int, dict[str, float]]


class _Lanes:
    """The scalars one scheduler run advances: per class and eigenvalue group, a gain lane, a mean
    lane and ``noise_steps`` noise lanes."""

    def __init__(self, spectra: dict[int, ClassSpectrum], noise_steps: int) -> None:
        self.spectra = spectra
        self.width = 2 + noise_steps  # lanes per (class, group)
        self.noise_steps = noise_steps
        variances = np.concatenate([s.variances for s in spectra.values()])
        self.groups = len(variances)
        self.variance = torch.from_numpy(np.repeat(variances, self.width)).double()
        kind = np.tile(np.arange(self.width), self.groups)
        self.mean_flag = torch.from_numpy((kind == 1).astype(np.float64))
        self.initial = torch.from_numpy((kind == 0).astype(np.float64))
        self._kind = kind
        self.calls = 0

    def noise(self, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """The noise of the next injecting step: 1 on that step's lanes, 0 elsewhere."""
        if self.calls >= self.noise_steps:
            raise RuntimeError(f"the scheduler injected noise more than {self.noise_steps} times")
        self.calls += 1
        unit = torch.from_numpy((self._kind == 1 + self.calls).astype(np.float64))
        return unit.reshape(like.shape).to(like.dtype)

    def coefficients(self, output: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(a [G], β [G], A = a² + Σ c_j² [G]) from the final lane values."""
        values = output.reshape(self.groups, self.width).double().numpy()
        gain, mean_gain = values[:, 0], values[:, 1]
        return gain, mean_gain, gain**2 + (values[:, 2:] ** 2).sum(axis=1)


def _denoiser_output(
    mixture: GaussianMixture, lanes: _Lanes, sample: torch.Tensor, timestep: torch.Tensor, prediction: str
) -> torch.Tensor:
    """The model's output on every lane (module doc): v̂ = √ᾱ ε̂ − √(1 − ᾱ) x̂_0, or ε̂."""
    a = mixture.alpha_prod_at(timestep.reshape(1).double().cpu())[0]
    x = sample.reshape(-1).double()
    residual = x - a.sqrt() * lanes.mean_flag
    d = a * lanes.variance + (1 - a)
    x0 = lanes.mean_flag + a.sqrt() * lanes.variance / d * residual
    eps = (1 - a).sqrt() / d * residual
    out = eps if prediction == "epsilon" else a.sqrt() * eps - (1 - a).sqrt() * x0
    return out.reshape(sample.shape).to(sample.dtype)


def exact_error(
    mixture: GaussianMixture,
    training_scheduler_config: dict,
    config: ResolvedConfig,
    classes: Sequence[int],
    optimized: OptimizedTimesteps | None = None,
    timesteps: Sequence[int] | None = None,
) -> ExactError:
    """The exact FD* and variance ratios of ``config`` (its sampler, steps, schedule and noise
    knobs; guidance must be 1) on ``classes``; ``timesteps`` overrides the schedule's list.

    Raises:
        ValueError: a guided or clipped config (the denoiser is then not linear).
    """
    if config.guidance_scale != 1.0 or config.clip_sample or config.dynamic_thresholding:
        raise ValueError(
            "the exact error needs guidance 1 and no clipping or thresholding (a linear sampler)"
        )
    scheduler = build_scheduler(config, training_scheduler_config, optimized)
    if timesteps is not None:
        scheduler.set_timesteps(timesteps=list(timesteps))
    spectra = class_spectra(mixture, classes)
    stochastic = not config.deterministic
    if stochastic and not hasattr(scheduler, "noise_source"):
        raise ValueError(f"sampler {config.sampler!r} draws its noise inside diffusers: no exact error")
    lanes = _Lanes(spectra, len(scheduler.timesteps) if stochastic else 0)
    if stochastic:
        scheduler.noise_source = lanes.noise
    prediction = str(training_scheduler_config.get("prediction_type", "epsilon"))
    sample = (lanes.initial * scheduler.init_noise_sigma).reshape(1, 1, 1, -1)
    with torch.inference_mode():
        for t in scheduler.timesteps:
            scaled = scheduler.scale_model_input(sample, t)
            output = _denoiser_output(mixture, lanes, scaled, t, prediction)
            extra = {"generator": None} if stochastic else {}
            sample = scheduler.step(output, t, sample, **extra).prev_sample
    _, mean_gain, variance = lanes.coefficients(sample)
    return _population_metrics(spectra, mean_gain, variance)


def _population_metrics(
    spectra: dict[int, ClassSpectrum], mean_gain: np.ndarray, variance: np.ndarray
) -> ExactError:
    per_class: dict[int, dict[str, float]] = {}
    start = 0
    for c, spectrum in spectra.items():
        groups = len(spectrum.variances)
        beta, out_var = mean_gain[start : start + groups], np.clip(variance[start : start + groups], 0, None)
        start += groups
        spread = spectrum.counts * (np.sqrt(out_var) - np.sqrt(spectrum.variances)) ** 2
        bias = spectrum.mean_squares * (beta - 1) ** 2
        free, floor = spectrum.counts[-1], spectrum.variances[-1]
        per_class[c] = {
            "fd": float(spread.sum() + bias.sum()),
            "low_ratio": float((free * out_var[-1] + bias[-1]) / (free * floor)),
            "high_ratio": float(np.mean(out_var[:-1] / spectrum.variances[:-1])),
        }
    means = {k: float(np.mean([m[k] for m in per_class.values()])) for k in ("fd", "low_ratio", "high_ratio")}
    return ExactError(per_class=per_class, **means)
