"""Fits the exact-score reference model (``workers.models.gaussian_mixture``) to the digits.

    python -m workers.training.fit_gaussian --out workers/models/mnist-gauss [--components 32]

Per class c, from its N_c digits in model space ([−1, 1], D = 784):

1. μ_c = the mean; S_c = the maximum-likelihood covariance (divided by N_c) = V diag(e) Vᵀ,
   eigenvalues in descending order.
2. U_c = the top-k eigenvectors (sign fixed: each column's largest-magnitude entry is
   positive, so the output does not depend on the LAPACK build's sign choice), λ_c = e_1..e_k.
3. s_c² = mean(e_{k+1}..e_D) = (tr S_c − Σ λ_c) / (D − k): the floor keeps the total variance
   tr Σ_c = tr S_c and makes Σ_c full rank (the data's S_c has rank < N_c and zero variance at
   the always-black border pixels).
4. π_c = N_c / N.

Deterministic: no randomness; the noise schedule is the bundled UNet's (cosine
``squaredcos_cap_v2``, 1,000 steps, v-prediction), so both models are served alike.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import DDPMScheduler

from workers.models.gaussian_mixture import GaussianMixture, save_gaussian_mixture
from workers.training.data import (
    DATA_DESCRIPTION,
    NUM_CLASSES,
    digit_model_metadata,
    load_mnist_digits,
    to_model_space,
)

NUM_TRAIN_TIMESTEPS = 1000
BETA_SCHEDULE = "squaredcos_cap_v2"
PREDICTION_TYPE = "v_prediction"


def noise_scheduler() -> DDPMScheduler:
    """The bundled UNet's training noise schedule (``workers.training.train.noise_scheduler_for``)."""
    return DDPMScheduler(
        num_train_timesteps=NUM_TRAIN_TIMESTEPS,
        beta_schedule=BETA_SCHEDULE,
        prediction_type=PREDICTION_TYPE,
        clip_sample=False,
    )


def _top_eigenpairs(covariance: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``rank`` largest eigenvalues (descending) and their eigenvectors [D, rank].

    Pixels with zero variance (the border is black in every digit) are exact null directions:
    the eigenproblem is solved on the other pixels only, which is exact and several times faster
    (the zero block also slows LAPACK down).
    """
    active = (covariance.diagonal() > 0).nonzero().flatten()
    if rank > active.numel():
        raise ValueError(f"--components {rank} exceeds the {active.numel()} pixels that vary in a class")
    block = covariance[active][:, active].numpy()
    eigenvalues, eigenvectors = np.linalg.eigh(block)  # ascending
    top = torch.zeros(covariance.shape[0], rank, dtype=torch.float64)
    top[active] = torch.from_numpy(eigenvectors[:, ::-1][:, :rank].copy())
    return torch.from_numpy(eigenvalues[::-1][:rank].copy()), top


def fit_gaussian_mixture(
    images: torch.Tensor, labels: torch.Tensor, rank: int, num_classes: int, alphas_cumprod: torch.Tensor
) -> tuple[GaussianMixture, dict[str, Any]]:
    """The mixture of ``images`` [N, C_img, H, W] (model space) by ``labels`` [N], and fit statistics.

    Args:
        rank: k, the principal directions kept per class.
    """
    x = images.reshape(images.shape[0], -1).double()
    dim = x.shape[1]
    if not 0 < rank < dim:
        raise ValueError(f"--components must be in 1..{dim - 1}, got {rank}")
    means, components, variances, floors, counts, captured = [], [], [], [], [], []
    for c in range(num_classes):
        # 1. mean and maximum-likelihood covariance
        xc = x[labels == c]
        if xc.shape[0] < 2:
            raise ValueError(f"class {c} has {xc.shape[0]} examples; at least 2 are needed")
        mu = xc.mean(0)
        centred = xc - mu
        covariance = centred.T @ centred / xc.shape[0]
        # 2. top-k eigenvectors, descending, with a fixed sign
        eigenvalues, top = _top_eigenpairs(covariance, rank)
        peak = top.abs().argmax(0)
        top = top * top[peak, torch.arange(rank)].sign()
        # 3. the floor: mean of the remaining eigenvalues (keeps the total variance)
        total = covariance.diagonal().sum()
        lam = eigenvalues.clamp(min=0)
        floor = (total - lam.sum()) / (dim - rank)
        means.append(mu)
        components.append(top)
        variances.append(lam)
        floors.append(floor)
        counts.append(xc.shape[0])
        captured.append(float(lam.sum() / total))
    count = torch.tensor(counts, dtype=torch.float64)
    mixture = GaussianMixture(
        means=torch.stack(means),
        components=torch.stack(components),
        variances=torch.stack(variances),
        floor=torch.stack(floors),
        log_weights=(count / count.sum()).log(),  # 4. class frequencies
        alphas_cumprod=alphas_cumprod,
        image_shape=(images.shape[1], images.shape[2], images.shape[3]),
    )
    stats = {
        "variance_captured": [round(v, 4) for v in captured],
        "floor": [round(float(f), 5) for f in floors],
        "total_variance": [
            round(float(x[labels == c].var(0, unbiased=False).sum()), 2) for c in range(num_classes)
        ],
        "examples": counts,
    }
    return mixture, stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workers.training.fit_gaussian", description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="model directory to write")
    parser.add_argument("--components", type=int, default=32, help="principal directions per class (k)")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    images, labels = load_mnist_digits()
    loaded = time.perf_counter()
    scheduler = noise_scheduler()
    mixture, stats = fit_gaussian_mixture(
        to_model_space(images),
        torch.from_numpy(labels),
        args.components,
        NUM_CLASSES,
        scheduler.alphas_cumprod,
    )
    fit_seconds = time.perf_counter() - loaded
    captured = stats["variance_captured"]
    metadata = digit_model_metadata(
        default_guidance_scale=1.0,
        fit={
            "data": DATA_DESCRIPTION,
            "components": args.components,
            "covariance": "maximum likelihood (divided by N_c)",
            "floor_rule": "mean of the eigenvalues beyond the top k (keeps the total variance)",
            "variance_captured_min": min(captured),
            "variance_captured_mean": round(sum(captured) / len(captured), 4),
            **stats,
            "load_seconds": round(loaded - started, 2),
            "fit_seconds": round(fit_seconds, 2),
            "command": "python -m workers.training.fit_gaussian "
            f"--out {args.out} --components {args.components}",
        },
    )
    save_gaussian_mixture(mixture, scheduler, args.out, metadata)
    floors = stats["floor"]
    print(
        f"wrote {args.out}: k={args.components}, variance captured {min(captured):.3f}..{max(captured):.3f} "
        f"(mean {sum(captured) / len(captured):.3f}), floor s² {min(floors):.4f}..{max(floors):.4f}; "
        f"data {loaded - started:.1f} s, fit {fit_seconds:.2f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
