"""The classical denoisers the service is compared with, each at its documented setting.

All take and return gray images in [0, 1] (float64) and are told the true σ (in the same units)
where they take one: an oracle they get and the service does not (it estimates σ̂ itself).

- **BM3D** (Dabov et al. 2007; Mäkinen et al. 2020): ``bm3d.bm3d(noisy, sigma_psd=σ)``, the
  package's default profile, both stages.
- **Non-local means** (Buades et al. 2005): ``skimage.restoration.denoise_nl_means`` with
  scikit-image's gallery setting ("Non-local means denoising for preserving textures"):
  ``h = 0.8 σ``, ``sigma = σ``, ``patch_size = 5``, ``patch_distance = 6``, ``fast_mode = True``.
- **Wavelet, BayesShrink** (Chang et al. 2000): ``denoise_wavelet(method="BayesShrink",
  mode="soft", rescale_sigma=True, sigma=σ)``, as in scikit-image's "Wavelet denoising" example.
- **Total variation** (Chambolle 2004): ``denoise_tv_chambolle(weight=w)``; its one parameter has no
  documented value, so w is tuned per σ: the weight of ``TV_WEIGHTS`` with the best mean PSNR on
  ``TUNING_DIGITS`` *training* digits (never the held-out ones) at that σ.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Denoiser = Callable[[np.ndarray, float], np.ndarray]  # (noisy in [0, 1], true σ in [0, 1] units)
TV_WEIGHTS = (0.02, 0.04, 0.06, 0.08, 0.1, 0.13, 0.16, 0.2, 0.25, 0.3, 0.4, 0.5)
TUNING_DIGITS = 50


def bm3d_denoise(noisy: np.ndarray, sigma: float) -> np.ndarray:
    import bm3d

    return np.clip(np.asarray(bm3d.bm3d(noisy, sigma_psd=sigma), dtype=np.float64), 0.0, 1.0)


def nl_means_denoise(noisy: np.ndarray, sigma: float) -> np.ndarray:
    from skimage.restoration import denoise_nl_means

    out = denoise_nl_means(noisy, h=0.8 * sigma, sigma=sigma, patch_size=5, patch_distance=6, fast_mode=True)
    return np.clip(out, 0.0, 1.0)


def wavelet_denoise(noisy: np.ndarray, sigma: float) -> np.ndarray:
    from skimage.restoration import denoise_wavelet

    out = denoise_wavelet(noisy, sigma=sigma, method="BayesShrink", mode="soft", rescale_sigma=True)
    return np.clip(out, 0.0, 1.0)


def tv_denoiser(weight: float) -> Denoiser:
    def denoise(noisy: np.ndarray, sigma: float) -> np.ndarray:
        from skimage.restoration import denoise_tv_chambolle

        return np.clip(denoise_tv_chambolle(noisy, weight=weight), 0.0, 1.0)

    return denoise


def tune_tv_weight(clean: list[np.ndarray], noisy: list[np.ndarray]) -> float:
    """The weight of TV_WEIGHTS with the best mean PSNR over the (clean, noisy) tuning pairs."""
    from skimage.metrics import peak_signal_noise_ratio

    def score(weight: float) -> float:
        denoise = tv_denoiser(weight)
        return float(
            np.mean(
                [
                    peak_signal_noise_ratio(c, denoise(n, 0.0), data_range=1.0)
                    for c, n in zip(clean, noisy, strict=True)
                ]
            )
        )

    return max(TV_WEIGHTS, key=score)


def classical_denoisers(tv_weight: float) -> dict[str, Denoiser]:
    return {
        "BM3D": bm3d_denoise,
        "non-local means": nl_means_denoise,
        "wavelet (BayesShrink)": wavelet_denoise,
        f"total variation (w={tv_weight:g})": tv_denoiser(tv_weight),
    }
