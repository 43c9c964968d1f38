"""Pure metric functions of the sampling-noise evaluation (numpy only; no model, no torch).

1. Variance ratios against a known class Gaussian N(μ_c, Σ_c), Σ_c = U_c diag(λ_c) U_cᵀ +
   s_c² (I − U_c U_cᵀ) (the exact-score model, ``workers.models.gaussian_mixture``). With
   r = x − μ_c, p = U_cᵀ r and r⊥ = r − U_c p for each sample x (D pixels, k components)::

       low  = mean_x |r⊥|² / ((D − k) s_c²)          the D − k low-variance directions
       high = mean_i var_x(p_i) / λ_c,i               the k principal directions

   low > 1 is noise the sampler left in (excess variance where the data has little); low < 1
   is over-smoothing. ``low`` uses the true mean, so a biased mean counts as excess too.
2. The Fréchet distance between Gaussians (Dowson & Landau 1982; the statistic of FID,
   Heusel et al. 2017)::

       FD = |m − μ|² + Tr(S + Σ − 2 (Σ^½ S Σ^½)^½)

   computed from eigenvalues of symmetric PSD matrices (no non-symmetric ``sqrtm``). With
   n < D samples S has rank n − 1, so FD has a large positive bias at fixed n: compare
   settings at the same n, against the FD of n exact draws (the estimator's floor). Worse,
   that bias grows with the sample variance: at n = 128, D = 784 samples with a quarter of
   the data's variance off the principal directions score a *lower* FD than exact draws.
2b. The structured FD* for an exact Gaussian reference. On a single Gaussian class every
   sampler (deterministic or not; guidance 1, no clipping) is a linear map of Gaussian noise
   by matrices that are functions of Σ_c, so its samples are exactly N(μ', Σ') with Σ' sharing
   Σ_c's eigenvectors: diagonal λ' along U_c, isotropic s'² off it. FD then reduces to::

       FD* = |μ' − μ|² + Σ_i (√λ'_i − √λ_i)² + (D − k) (s' − s)²

   estimated with the unbiased |m − μ|² − Tr(S)/n for the mean term and the sample variances
   along U_c and off it (their bias is ~Σλ/(2n), visible in the exact-draws row). Consistent
   at any n, so it ranks over-smoothing correctly; for guided rows (a mixture score, not
   linear) it is the FD to the projection of Σ' on that family.
3. The high-frequency energy share: the fraction of an image's spectral energy (DC excluded)
   at radial frequency above ``cutoff`` cycles/pixel (0.25 = half the Nyquist frequency),
   pooled over a set of images; samples over data gives the ratio (1 = like the data).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NYQUIST_HALF = 0.25  # cycles/pixel: half of the Nyquist frequency 0.5


@dataclass(frozen=True)
class ClassGaussian:
    """N(μ, Σ) with Σ = U diag(λ) Uᵀ + s² (I − U Uᵀ): the exact class distribution.

    Args:
        mean: μ [D].
        components: U [D, k], orthonormal columns.
        variances: λ [k].
        floor: s², the variance in every direction orthogonal to U.
    """

    mean: np.ndarray
    components: np.ndarray
    variances: np.ndarray
    floor: float

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    @property
    def rank(self) -> int:
        return int(self.components.shape[1])

    def covariance(self) -> np.ndarray:
        """Σ [D, D]."""
        u = self.components
        return (u * self.variances) @ u.T + self.floor * (np.eye(self.dim) - u @ u.T)

    def sqrt_covariance(self) -> np.ndarray:
        """Σ^½ [D, D] in closed form: U diag(√λ) Uᵀ + s (I − U Uᵀ)."""
        u = self.components
        return (u * np.sqrt(self.variances)) @ u.T + np.sqrt(self.floor) * (np.eye(self.dim) - u @ u.T)

    def trace(self) -> float:
        return float(self.variances.sum() + (self.dim - self.rank) * self.floor)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` exact draws [n, D] (for tests; the model's own ``sample_x0`` is used in sweeps)."""
        z = rng.standard_normal((n, self.rank))
        xi = rng.standard_normal((n, self.dim))
        xi_perp = xi - (xi @ self.components) @ self.components.T
        return self.mean + (z * np.sqrt(self.variances)) @ self.components.T + np.sqrt(self.floor) * xi_perp


def variance_ratios(samples: np.ndarray, reference: ClassGaussian) -> tuple[float, float]:
    """(low, high): sample variance over true variance in the low- and high-variance directions.

    Args:
        samples: [n, D] (n ≥ 2) draws that should follow ``reference``.
    """
    residual = samples.reshape(len(samples), -1).astype(np.float64) - reference.mean
    coords = residual @ reference.components  # p [n, k]
    perp = residual - coords @ reference.components.T  # r⊥ [n, D]
    low = float(np.mean(np.sum(perp**2, axis=1)) / ((reference.dim - reference.rank) * reference.floor))
    high = float(np.mean(coords.var(axis=0, ddof=1) / reference.variances))
    return low, high


def _sqrt_eigenvalue_sum(matrix: np.ndarray) -> float:
    """Tr(M^½) of a symmetric PSD matrix (round-off negatives clipped to 0)."""
    eigenvalues = np.linalg.eigvalsh((matrix + matrix.T) / 2)
    return float(np.sqrt(np.clip(eigenvalues, 0, None)).sum())


def psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """The symmetric square root of a symmetric PSD matrix."""
    eigenvalues, eigenvectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (eigenvectors * np.sqrt(np.clip(eigenvalues, 0, None))) @ eigenvectors.T


def gaussian_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean [d], covariance [d, d] with ddof = 1) of ``features`` [n, d]."""
    x = features.reshape(len(features), -1).astype(np.float64)
    return x.mean(axis=0), np.cov(x, rowvar=False, ddof=1).reshape(x.shape[1], x.shape[1])


def frechet_distance(mean_a: np.ndarray, cov_a: np.ndarray, mean_b: np.ndarray, cov_b: np.ndarray) -> float:
    """FD between N(mean_a, cov_a) and N(mean_b, cov_b)."""
    sqrt_b = psd_sqrt(cov_b)
    cross = _sqrt_eigenvalue_sum(sqrt_b @ cov_a @ sqrt_b)  # Tr((Σ_b^½ Σ_a Σ_b^½)^½)
    return float(np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * cross)


def frechet_distance_to_gaussian(samples: np.ndarray, reference: ClassGaussian) -> float:
    """FD between the sample statistics of ``samples`` [n, D] and the exact N(μ, Σ).

    Same value as ``frechet_distance(*gaussian_statistics(samples), μ, Σ)``, but the nonzero
    eigenvalues of Σ^½ S Σ^½ are taken from the n × n matrix A Aᵀ, A = X_c Σ^½ / √(n − 1),
    when n < D.
    """
    x = samples.reshape(len(samples), -1).astype(np.float64)
    mean = x.mean(axis=0)
    centred = (x - mean) / np.sqrt(len(x) - 1)
    a = centred @ reference.sqrt_covariance()
    cross = _sqrt_eigenvalue_sum(a @ a.T if len(x) < x.shape[1] else a.T @ a)
    trace_s = float(np.sum(centred**2))
    return float(np.sum((mean - reference.mean) ** 2) + trace_s + reference.trace() - 2 * cross)


def structured_frechet_distance(samples: np.ndarray, reference: ClassGaussian) -> float:
    """FD* (module doc, 2b): FD to N(μ, Σ) of the samples' Gaussian restricted to Σ's eigenvectors.

    Args:
        samples: [n, D] (n ≥ 2).
    """
    x = samples.reshape(len(samples), -1).astype(np.float64)
    n, free = len(x), reference.dim - reference.rank
    centred = x - x.mean(axis=0)
    # 1. mean term, unbiased: E|m − μ|² = |μ' − μ|² + Tr(Σ')/n
    mean_term = float(np.sum((x.mean(axis=0) - reference.mean) ** 2) - np.sum(centred**2) / (n - 1) / n)
    # 2. λ' along U and s'² off it
    coords = centred @ reference.components
    top_variances = np.sum(coords**2, axis=0) / (n - 1)
    floor = float(np.sum((centred - coords @ reference.components.T) ** 2) / (n - 1) / free)
    top_term = float(np.sum((np.sqrt(top_variances) - np.sqrt(reference.variances)) ** 2))
    return mean_term + top_term + free * (np.sqrt(floor) - np.sqrt(reference.floor)) ** 2


def high_frequency_share(images: np.ndarray, cutoff: float = NYQUIST_HALF) -> float:
    """Energy at radial frequency > ``cutoff`` cycles/pixel over all non-DC energy, pooled.

    Args:
        images: [N, H, W] (any real scale; the share is scale-free).
    """
    x = images.astype(np.float64)
    power = np.abs(np.fft.fft2(x - x.mean(axis=(-2, -1), keepdims=True))) ** 2
    fy = np.fft.fftfreq(x.shape[-2])[:, None]
    fx = np.fft.fftfreq(x.shape[-1])[None, :]
    high = np.sqrt(fx**2 + fy**2) > cutoff
    total = float(power.sum())
    return float(power[..., high].sum()) / total if total > 0 else 0.0


def high_frequency_ratio(samples: np.ndarray, data: np.ndarray, cutoff: float = NYQUIST_HALF) -> float:
    """``high_frequency_share`` of samples over that of the data (1 = as much as the data)."""
    return high_frequency_share(samples, cutoff) / high_frequency_share(data, cutoff)
