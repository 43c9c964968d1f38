"""The denoising evaluation: its noise is the 8-bit noise a client sends, its classical baselines
run at their settings, and (slow) a quick run writes the table, the JSON and the grids."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from workers.evaluation.classical_denoisers import classical_denoisers, tune_tv_weight
from workers.evaluation.denoise_eval import SIGMAS, add_noise, main
from workers.training.data import load_mnist_digits


def test_the_noise_is_seeded_rounded_and_clipped_to_8_bits() -> None:
    clean = load_mnist_digits()[0][:4]
    noisy = add_noise(clean, 25, 1025)
    assert noisy.dtype == np.uint8 and np.array_equal(noisy, add_noise(clean, 25, 1025))
    assert (noisy == 0).mean() > 0.3  # the black background piles up at 0
    residual = noisy.astype(float) - clean
    assert 0.5 * 25 < residual[(clean > 60) & (clean < 190)].std() < 1.5 * 25


def test_the_classical_denoisers_run_and_all_but_bayesshrink_improve_a_noisy_digit() -> None:
    """BayesShrink at scikit-image's setting does not improve these small clipped digits (see
    docs/denoise.md); the others must."""
    clean = load_mnist_digits()[0][:3].astype(np.float64) / 255
    noisy = [
        np.clip(c + 0.2 * np.random.default_rng(i).standard_normal(c.shape), 0, 1)
        for i, c in enumerate(clean)
    ]
    weight = tune_tv_weight(list(clean), noisy)
    for name, denoise in classical_denoisers(weight).items():
        out = denoise(noisy[0], 0.2)
        assert out.shape == clean[0].shape and np.isfinite(out).all(), name
        if not name.startswith("wavelet"):
            assert np.mean((out - clean[0]) ** 2) < np.mean((noisy[0] - clean[0]) ** 2), name


@pytest.mark.slow
def test_the_quick_evaluation_writes_its_table_json_and_grids(tmp_path: Path) -> None:
    main(["--quick", "--model", "mnist-unet", "--out", str(tmp_path), "--threads", "1"])
    report = json.loads((tmp_path / "results.json").read_text())
    assert set(report["methods"]) >= {"noisy input", "BM3D", "service ddim 1 step"}
    assert all((tmp_path / f"grid_sigma{sigma}.png").exists() for sigma in SIGMAS)
    assert "| σ |" in (tmp_path / "results.md").read_text()
