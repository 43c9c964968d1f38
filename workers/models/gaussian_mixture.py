"""An exact-score reference model: a class-conditional Gaussian mixture whose denoiser
E[x0 | x_t] is computed in closed form.

Because the target distribution is known exactly, every deviation of served samples from it
is the sampler's error, not the network's. The model is served through the same engine as the
UNet (``GaussianMixtureDenoiser`` has the UNet's call signature and predicts v).

Model (D = 784 pixels, classes c = 0..C−1, k principal directions per class)::

    x0 | c ~ N(μ_c, Σ_c),   Σ_c = U_c diag(λ_c) U_cᵀ + s_c² (I − U_c U_cᵀ),   p(c) = π_c

U_c [D, k] has orthonormal columns, λ_c [k] is the variance along them and s_c² the variance in
every other direction (the "floor"). The unconditional model (null class C) is the mixture.

Forward process, variance preserving (Ho et al. 2020, eq. 4): x_t = √ᾱ_t x0 + √(1 − ᾱ_t) ε, so
x_t | c ~ N(√ᾱ μ_c, ᾱ Σ_c + (1 − ᾱ) I). Gaussian conditioning gives, with r = x_t − √ᾱ μ_c::

    x̂0_c = E[x0 | x_t, c] = μ_c + √ᾱ Σ_c (ᾱ Σ_c + (1 − ᾱ) I)⁻¹ r
    ε̂_c  = (x_t − √ᾱ x̂0_c) / √(1 − ᾱ) = √(1 − ᾱ) (ᾱ Σ_c + (1 − ᾱ) I)⁻¹ r

Σ_c and I share eigenvectors, so with p = U_cᵀ r, r⊥ = r − U_c p and d(e) = ᾱ e + 1 − ᾱ for an
eigenvalue e (λ_i along U_c, s_c² elsewhere)::

    x̂0_c = μ_c + U_c (g(λ) ⊙ p) + g(s²) r⊥,        g(e) = √ᾱ e / d(e)
    ε̂_c  = U_c (h(λ) ⊙ p) + h(s²) r⊥,             h(e) = √(1 − ᾱ) / d(e)

The second line is the well-conditioned form of ε̂: no division by √(1 − ᾱ) → 0 at t = 0, and
at t = T−1 (ᾱ ≈ 2·10⁻⁹) h → 1 while x̂0_c comes from g, not from ε̂/√ᾱ. The mixture posterior::

    w_c(x_t) ∝ π_c N(x_t; √ᾱ μ_c, ᾱ Σ_c + (1 − ᾱ) I)      (conditional rows: w = one-hot(c))
    log N = −½ [Σ_i p_i²/d(λ_i) + |r⊥|²/d(s²) + Σ_i log d(λ_i) + (D − k) log d(s²) + D log 2π]
    x̂0 = Σ_c w_c x̂0_c,   ε̂ = Σ_c w_c ε̂_c,   v̂ = √ᾱ ε̂ − √(1 − ᾱ) x̂0   (Salimans & Ho 2022, §4)

Timesteps (the engine passes one float per row): log σ_t = ½ log((1 − ᾱ_t)/ᾱ_t) is interpolated
linearly between integer timesteps, the inverse of diffusers' ``_sigma_to_t``, and
ᾱ = 1/(1 + σ²); an integer t gives exactly the training ᾱ_t.

Notation: ``alpha_prod_t`` -> ᾱ_t, ``means`` -> μ, ``components`` -> U, ``variances`` -> λ,
``floor`` -> s², ``log_weights`` -> log π. Everything is computed in float64.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from diffusers import DDPMScheduler
from diffusers.models.unets.unet_2d import UNet2DOutput
from safetensors.torch import load_file, save_file

from workers.models.metadata import ModelMetadata

MIXTURE_FILE = "gaussian_mixture.safetensors"


def _orthonormalise(matrices: torch.Tensor) -> torch.Tensor:
    """The nearest matrices with orthonormal columns (polar factor) by two Newton–Schulz steps:
    the stored float32 columns are orthonormal to ~1e-7, float64 ones to ~1e-16 after this."""
    q = matrices.double()
    for _ in range(2):
        q = 1.5 * q - 0.5 * q @ (q.transpose(-1, -2) @ q)
    return q


class GaussianMixture(torch.nn.Module):
    """The mixture's parameters (float64 buffers) and its exact posterior mean.

    Args:
        means: μ [C, D].
        components: U [C, D, k], orthonormal columns (re-orthonormalised in float64).
        variances: λ [C, k], the variance along each component.
        floor: s² [C], the variance in every direction orthogonal to the components.
        log_weights: log π [C].
        alphas_cumprod: ᾱ_t [T] of the training noise schedule.
        image_shape: (channels, height, width) with channels · height · width = D.
    """

    means: torch.Tensor
    components: torch.Tensor
    variances: torch.Tensor
    floor: torch.Tensor
    log_weights: torch.Tensor
    alphas_cumprod: torch.Tensor
    log_sigmas: torch.Tensor

    def __init__(
        self,
        means: torch.Tensor,
        components: torch.Tensor,
        variances: torch.Tensor,
        floor: torch.Tensor,
        log_weights: torch.Tensor,
        alphas_cumprod: torch.Tensor,
        image_shape: tuple[int, int, int],
    ) -> None:
        super().__init__()
        num_classes, dim, rank = components.shape
        if means.shape != (num_classes, dim) or math.prod(image_shape) != dim:
            raise ValueError(
                f"means {tuple(means.shape)} and image {image_shape} do not fit U {components.shape}"
            )
        vectors = (floor.shape, log_weights.shape)
        if variances.shape != (num_classes, rank) or vectors != ((num_classes,), (num_classes,)):
            raise ValueError(
                f"variances {tuple(variances.shape)}, floor {tuple(floor.shape)} vs C={num_classes}"
            )
        self.image_shape = image_shape
        self.register_buffer("means", means.double())
        self.register_buffer("components", _orthonormalise(components))
        self.register_buffer("variances", variances.double())
        self.register_buffer("floor", floor.double())
        self.register_buffer("log_weights", torch.log_softmax(log_weights.double(), dim=0))
        alphas = alphas_cumprod.double()
        self.register_buffer("alphas_cumprod", alphas)
        self.register_buffer("log_sigmas", 0.5 * (torch.log1p(-alphas) - torch.log(alphas)))

    @property
    def num_classes(self) -> int:
        return int(self.means.shape[0])

    @property
    def dim(self) -> int:
        return int(self.means.shape[1])

    @property
    def rank(self) -> int:
        return int(self.components.shape[2])

    def class_covariance(self, c: int) -> torch.Tensor:
        """Σ_c [D, D], float64."""
        u = self.components[c]
        eye = torch.eye(self.dim, dtype=torch.float64, device=u.device)
        return (u * self.variances[c]) @ u.T + self.floor[c] * (eye - u @ u.T)

    def sample_x0(self, c: int | None, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` exact draws [n, *image_shape] (float64) from class ``c``, or from the mixture if None.

        x0 = μ_c + U_c (√λ_c ⊙ z) + s_c (ξ − U_c U_cᵀ ξ), z ~ N(0, I_k), ξ ~ N(0, I_D).
        """
        device = generator.device if generator is not None else self.means.device
        if c is None:
            weights = self.log_weights.exp().to(device)
            classes = torch.multinomial(weights, n, replacement=True, generator=generator)
        else:
            if not 0 <= c < self.num_classes:
                raise ValueError(f"class {c} is not in 0..{self.num_classes - 1}")
            classes = torch.full((n,), c, dtype=torch.long, device=device)
        z = torch.randn(n, self.rank, generator=generator, dtype=torch.float64, device=device)
        xi = torch.randn(n, self.dim, generator=generator, dtype=torch.float64, device=device)
        classes, z, xi = (t.to(self.means.device) for t in (classes, z, xi))
        x0 = torch.empty_like(xi)
        for label in classes.unique().tolist():
            rows, u = classes == label, self.components[label]
            xi_perp = xi[rows] - (xi[rows] @ u) @ u.T
            top = (self.variances[label].sqrt() * z[rows]) @ u.T
            x0[rows] = self.means[label] + top + self.floor[label].sqrt() * xi_perp
        return x0.reshape(n, *self.image_shape)

    def alpha_prod_at(self, timestep: torch.Tensor) -> torch.Tensor:
        """ᾱ (float64) at possibly fractional timesteps: log σ interpolated linearly between
        integer timesteps; integer timesteps give exactly ``alphas_cumprod[t]``."""
        last = self.alphas_cumprod.shape[0] - 1
        if timestep.device.type == "cpu" and bool(
            ((timestep < 0) | (timestep > last) | timestep.isnan()).any()
        ):
            # checked on the host only: on CUDA the engine's step loop must not wait for the device
            raise ValueError(f"timesteps must lie in [0, {last}], got {timestep.flatten().tolist()}")
        t = timestep.double().to(self.alphas_cumprod.device).clamp(0, last)
        low = t.floor().long().clamp(max=last)
        high = (low + 1).clamp(max=last)
        frac = t - low
        log_sigma = (1 - frac) * self.log_sigmas[low] + frac * self.log_sigmas[high]
        interpolated = torch.sigmoid(-2 * log_sigma)  # 1 / (1 + σ²)
        return torch.where(frac == 0, self.alphas_cumprod[low], interpolated)

    def _class_mask(self, class_labels: torch.Tensor | None, rows: int) -> torch.Tensor | None:
        """[B, C] True where a component may take part: everywhere for the null class."""
        if class_labels is None:
            return None
        labels = class_labels.reshape(-1).long().expand(rows)
        if labels.device.type == "cpu" and bool(((labels < 0) | (labels > self.num_classes)).any()):
            raise ValueError(
                f"class labels must be 0..{self.num_classes} ({self.num_classes}: the null class), "
                f"got {labels.tolist()}"
            )
        labels = labels.to(self.means.device)
        classes = torch.arange(self.num_classes, device=labels.device)
        return (labels[:, None] == classes) | (labels[:, None] == self.num_classes)

    def posterior(
        self, x_t: torch.Tensor, alpha_prod_t: torch.Tensor, class_labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(x̂0 [B, D], ε̂ [B, D], responsibilities w [B, C]), float64, as in the module docstring.

        Args:
            x_t: [B, ...] noisy samples (any float dtype).
            alpha_prod_t: ᾱ per row [B] (or a scalar).
            class_labels: [B] in 0..C (C: the null class, the mixture); None: all rows null.
        """
        # 1. notation: x_t -> x, ᾱ -> a; everything float64 and flat
        rows = x_t.shape[0]
        x = x_t.reshape(rows, -1).to(self.means.device, torch.float64)
        a = torch.as_tensor(alpha_prod_t).to(x).reshape(-1).expand(rows)[:, None, None]  # [B, 1, 1]
        # 2. per-component residual r, its coordinates p = Uᵀ r and |r⊥|² = |r|² − |p|²
        residual = x[:, None, :] - a.sqrt() * self.means[None]  # [B, C, D]
        coords = torch.einsum("bcd,cdk->bck", residual, self.components)  # [B, C, k]
        perp_sq = ((residual**2).sum(-1) - (coords**2).sum(-1)).clamp(min=0)  # [B, C]
        # 3. eigenvalues of ᾱΣ_c + (1−ᾱ)I: d(λ) along U_c, d(s²) elsewhere
        d_top = a * self.variances + (1 - a)  # [B, C, k]
        d_floor = a[..., 0] * self.floor + (1 - a[..., 0])  # [B, C]
        # 4. responsibilities: log π_c + log N(x_t; √ᾱ μ_c, ᾱΣ_c + (1−ᾱ)I), log-sum-exp
        mahalanobis = (coords**2 / d_top).sum(-1) + perp_sq / d_floor
        log_det = d_top.log().sum(-1) + (self.dim - self.rank) * d_floor.log()
        logits = self.log_weights - 0.5 * (mahalanobis + log_det + self.dim * math.log(2 * math.pi))
        mask = self._class_mask(class_labels, rows)
        if mask is not None:
            logits = logits.masked_fill(~mask, -math.inf)
        weights = torch.softmax(logits, dim=1)  # [B, C]
        # 5. gains g (x̂0) and h (ε̂); r⊥ terms folded: Σ_c w_c g_s r⊥_c = Σ_c w_c g_s (r_c − U_c p_c)
        sqrt_a, sqrt_1ma = a.sqrt(), (1 - a).sqrt()
        g_top, g_floor = sqrt_a * self.variances / d_top, sqrt_a[..., 0] * self.floor / d_floor
        h_top, h_floor = sqrt_1ma / d_top, sqrt_1ma[..., 0] / d_floor
        coefs = torch.stack(
            [
                weights[..., None] * (g_top - g_floor[..., None]) * coords,
                weights[..., None] * (h_top - h_floor[..., None]) * coords,
            ]
        )  # [2, B, C, k]
        in_subspace = torch.einsum("obck,cdk->obd", coefs, self.components)
        x0 = weights @ self.means + torch.einsum("bc,bcd->bd", weights * g_floor, residual) + in_subspace[0]
        eps = torch.einsum("bc,bcd->bd", weights * h_floor, residual) + in_subspace[1]
        return x0, eps, weights

    def posterior_mean(
        self, x_t: torch.Tensor, alpha_prod_t: torch.Tensor, class_labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x̂0 = E[x0 | x_t] shaped and typed like ``x_t`` (see ``posterior``)."""
        x0, _, _ = self.posterior(x_t, alpha_prod_t, class_labels)
        return x0.reshape(x_t.shape).to(x_t.dtype)


class GaussianMixtureDenoiser(torch.nn.Module):
    """The mixture behind the UNet's call signature: predicts v (or ε) at (x_t, t, class label)."""

    mixture: GaussianMixture

    def __init__(self, mixture: GaussianMixture, prediction_type: str = "v_prediction") -> None:
        super().__init__()
        if prediction_type not in ("v_prediction", "epsilon"):
            raise ValueError(f"prediction_type {prediction_type!r} is not one of v_prediction, epsilon")
        self.mixture = mixture
        self.prediction_type = prediction_type

    def forward(
        self, sample: torch.Tensor, timestep: torch.Tensor | float, class_labels: torch.Tensor | None = None
    ) -> Any:
        """UNet2DOutput with v̂ = √ᾱ ε̂ − √(1 − ᾱ) x̂0 (or ε̂), in the dtype and device of ``sample``."""
        t = torch.as_tensor(timestep).reshape(-1).expand(sample.shape[0])
        alpha_prod_t = self.mixture.alpha_prod_at(t)
        x0, eps, _ = self.mixture.posterior(sample, alpha_prod_t, class_labels)
        a = alpha_prod_t[:, None]
        out = eps if self.prediction_type == "epsilon" else a.sqrt() * eps - (1 - a).sqrt() * x0
        return UNet2DOutput(sample=out.reshape(sample.shape).to(sample.device, sample.dtype))


def save_gaussian_mixture(
    mixture: GaussianMixture, scheduler: DDPMScheduler, out_dir: Path, metadata: ModelMetadata
) -> None:
    """Writes ``gaussian_mixture.safetensors`` (μ, U as float32: about 1 MB; the rest float64),
    ``denoise_model.json`` (``metadata`` plus the architecture) and ``scheduler/`` (the training
    noise schedule), the layout of a UNet directory with the weights swapped."""
    out_dir.mkdir(parents=True, exist_ok=True)
    scheduler.save_pretrained(out_dir / "scheduler")
    tensors = {
        "means": mixture.means.float(),
        "components": mixture.components.float(),
        "variances": mixture.variances,
        "floor": mixture.floor,
        "log_weights": mixture.log_weights,
    }
    save_file({k: v.contiguous().cpu() for k, v in tensors.items()}, str(out_dir / MIXTURE_FILE))
    metadata.model_copy(update={"architecture": "gaussian_mixture"}).write(out_dir)


def load_gaussian_mixture(path: Path | str) -> GaussianMixture:
    """The mixture in a model directory (float64, on the CPU), with its training ᾱ schedule."""
    path = Path(path)
    tensors = load_file(str(path / MIXTURE_FILE))
    metadata = ModelMetadata.read(path)
    scheduler = DDPMScheduler.from_pretrained(path / "scheduler")
    size = metadata.image_size
    return GaussianMixture(
        means=tensors["means"],
        components=tensors["components"],
        variances=tensors["variances"],
        floor=tensors["floor"],
        log_weights=tensors["log_weights"],
        alphas_cumprod=scheduler.alphas_cumprod,
        image_shape=(metadata.channels, size, size),
    )
