"""The sampling-noise sweep runs end to end on tiny settings and its numbers behave."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from workers.evaluation.noise_models import ClassRoutedDenoiser, load_sweep_model
from workers.evaluation.noise_plots import write_figures
from workers.evaluation.noise_report import add_answers, markdown_report
from workers.evaluation.noise_settings import Setting, SweepSize, exact_settings, trained_settings
from workers.evaluation.noise_sweep import DataReference, ModelRun, run_model
from workers.models.loading import LoadedModel


@pytest.fixture(scope="module")
def exact_model() -> LoadedModel:
    return load_sweep_model("exact")


def test_class_routed_denoiser_matches_the_served_one(exact_model: LoadedModel) -> None:
    generator = torch.Generator().manual_seed(0)
    sample = torch.randn(24, 1, 28, 28, generator=generator)
    timesteps = torch.rand(24, generator=generator) * 999
    labels = torch.tensor([0, 3, 10, 9] * 6)  # 10: the null class, the whole mixture
    denoiser = exact_model.network
    assert isinstance(denoiser, ClassRoutedDenoiser)
    routed = denoiser(sample, timesteps, class_labels=labels).sample
    served = denoiser.served(sample, timesteps, class_labels=labels).sample
    torch.testing.assert_close(routed, served, rtol=1e-6, atol=1e-6)


def _tiny_run(model: LoadedModel) -> ModelRun:
    small: dict[str, Any] = {"variance_type": "fixed_small"}
    posterior: dict[str, Any] = {"variance_form": "posterior", "groups": ("bound",), **small}
    settings = [
        Setting("exact", "ddpm", 6, groups=("bound", "reference"), **small),
        Setting("exact", "ddpm", 6, variance_bound=0.05, groups=("bound",), **small),
        Setting("exact", "ddpm", 6, variance_bound=0.0, groups=("bound",), **small),
        Setting("exact", "ddpm", 6, variance_bound=0.05, **posterior),
        Setting("exact", "ddpm", 6, variance_bound=0.0, grid=True, **posterior),
        Setting("exact", "ddim", 6, eta=0.0, groups=("ladder",)),
        Setting("exact", "ddim", 12, eta=0.0, groups=("ladder",)),
        Setting("exact", "ddim", 6, eta=1.0, variance_bound=0.0),  # no noise left: DDIM η=0
        Setting("exact", "ddim", 6, eta=0.0, schedule="quadratic"),  # starts at t = 800
        Setting("exact", "euler_a", 6, schedule="karras"),  # refused: Euler ancestral takes no list
        *[
            Setting("exact", "unipc", n, schedule=s, groups=("schedules",))
            for n in (5, 8)
            for s in ("uniform", "optimized")
        ],
    ]
    return run_model("exact", model, settings, SweepSize((1,), 24, 2))


def test_exact_sweep_smoke(exact_model: LoadedModel, tmp_path: Path) -> None:
    run = _tiny_run(exact_model)
    rows = {r["label"]: r for r in run.rows}
    assert "schedule" in rows["euler_a karras 6"]["skipped"]
    assert run.floor["low_ratio"]["mean"] == pytest.approx(1.0, abs=0.05)  # exact draws
    assert run.floor["fd"]["mean"] > 5 * abs(run.floor["fd_structured"]["mean"])  # the n < D bias
    plain, marginal, posterior = (
        rows["ddpm fixed_small 6"],
        rows["ddpm fixed_small b=0 6"],
        rows["ddpm fixed_small posterior b=0 6"],
    )
    assert plain["nfe"] == 6 and plain["rows_per_image"] == 6 and plain["images"] == 24
    # the literal clamp keeps only the posterior mean: every sample is the same image
    assert posterior["low_ratio"] < 1e-6 and posterior["high_ratio"] < 1e-6
    assert posterior["fd_structured"] > plain["fd_structured"]
    # the marginal form at b = 0 is deterministic DDIM, closer to the truth than DDPM
    assert marginal["fd_exact"] == pytest.approx(rows["ddim η=0 6"]["fd_exact"], rel=1e-4)
    assert marginal["fd_exact"] < plain["fd_exact"]
    # the closed form where the sampler is linear; the optimized schedule far below uniform
    assert abs(rows["ddim η=0 12"]["fd_exact"] - rows["ddim η=0 12"]["fd_structured"]) < 1.5
    for n in (5, 8):
        assert rows[f"unipc optimized {n}"]["fd_exact"] < rows[f"unipc {n}"]["fd_exact"] / 5
        assert rows[f"unipc optimized {n}"]["schedule"] == "optimized"
    assert set(run.grids) == {"exact draws", "ddpm fixed_small posterior b=0 6"}

    report: dict[str, Any] = {"mode": "test", "seed": 0, "wall_seconds": 1.0}
    report["exact"] = {
        "model": "mnist-gauss",
        "classes": [1],
        "per_class": 24,
        "floor_repeats": 2,
        "floor": run.floor,
        "rows": run.rows,
    }
    add_answers(report)
    answers = report["answers"]
    assert answers["variance_bound"]["exact: ddpm fixed_small posterior, 6 steps"]["monotone"]
    assert any("ddim η=0 6 = " in same and "ddim η=1 b=0 6" in same for same in answers["identical_results"])
    assert [late["label"] for late in answers["late_start"]] == ["ddim η=0 quadratic 6"]
    assert rows["ddpm fixed_small 6"]["fd_structured_over_reference"] == 1.0
    choice = answers["default_choice_exact"]
    assert choice["chosen"]["nfe"] <= choice["best"]["nfe"]
    markdown = markdown_report(report)
    assert "| ddpm fixed_small posterior b=0 6 | 6 |" in markdown and "falls monotonically" in markdown
    written = write_figures(report, {"exact": run.grids}, tmp_path)
    assert {p.name for p in written} == {
        "exact_vs_nfe.png",
        "schedules_vs_nfe.png",
        "variance_bound.png",
        "grid_exact.png",
    }
    assert all(p.stat().st_size > 1000 for p in written)


def test_reruns_give_the_same_numbers(exact_model: LoadedModel) -> None:
    setting = [Setting("exact", "ddpm", 4, variance_type="fixed_small")]
    first, second = (run_model("exact", exact_model, setting, SweepSize((8,), 8, 1)) for _ in range(2))
    for key in ("low_ratio", "high_ratio", "fd", "fd_structured", "noise_estimate"):
        assert first.rows[0][key] == second.rows[0][key]
    assert first.floor == second.floor


def test_every_sweep_setting_is_valid_and_labelled_once() -> None:
    for quick in (True, False):
        settings = exact_settings(quick) + trained_settings(quick)
        for setting in settings:
            setting.request()  # pydantic-valid
        for kind in ("exact", "trained"):
            labels = [s.label for s in settings if s.model == kind]
            assert len(labels) == len(set(labels)), labels
        assert sum("reference" in s.groups for s in exact_settings(quick)) == 1
    full = {s.label for s in exact_settings(False)}
    assert {
        "ddpm fixed_small 1000",
        "ddim η=0 10",
        "ddpm fixed_large 10",
        "ddpm fixed_small b=0 10",
        "ddim η=1 b=0.02 10",
    } <= full


@pytest.mark.slow
def test_trained_sweep_smoke() -> None:
    model = load_sweep_model("trained")
    data = DataReference.fit()
    assert data.held_out_accuracy > 0.9
    settings = [
        Setting("trained", "ddim", 3, eta=0.0),
        Setting("trained", "ddim", 3, eta=0.0, guidance_scale=1.0),
    ]
    run = run_model("trained", model, settings, SweepSize(tuple(range(10)), 1, 2), data)
    guided, unguided = run.rows
    assert guided["rows_per_image"] == 6 and unguided["rows_per_image"] == 3
    for row in run.rows:
        assert 0 <= row["accuracy"] <= 1 and row["fd_features"] > 0 and np.isfinite(row["hf_ratio"])
    assert run.floor["accuracy"]["mean"] > 0.9
